"""Summaries measured against the baselines a model must clear: lead-k (the first k
sentences, k chosen on the dataset's training split) beside every summary score, and the
extractive summarizer (tasks/extractive.py) as a method of its own."""

from __future__ import annotations

import functools
from typing import Any

from slmkit.evaluate import Progress, Timer, rouge
from slmkit.tasks.data import SummarizationTask

LEAD_KS = range(1, 31)
LEAD_TUNE_ROWS = 300  # training rows lead-k is chosen on (the first of the split)
DEFAULT_LEAD_K = 3  # a user's file has no training split


@functools.cache
def _chosen_k(name: str, file: str) -> int:
    from slmkit.tasks.extractive import lead

    train = SummarizationTask(name, file, split="train")
    docs, refs = train.load(LEAD_TUNE_ROWS)
    best, best_score = 1, -1.0
    for k in LEAD_KS:
        score = rouge([lead(d, k) for d in docs], refs)["rougeL"]
        if score > best_score:
            best, best_score = k, score
        elif k - best >= 3:  # three longer leads in a row did no better
            break
    return best


def lead_k(spec: SummarizationTask) -> tuple[int, str]:
    """k for the lead-k baseline and where it came from: the k with the best ROUGE-L on the
    first 300 training rows of a built-in dataset (searched upwards from 1 until three longer
    leads in a row do no better); 3 for a user's file."""
    train = spec.training()
    if train is None:
        return DEFAULT_LEAD_K, "fixed (a user's file has no training split)"
    k = _chosen_k(train.name, train.file)
    return k, f"best ROUGE-L on {train.name}-train (first {LEAD_TUNE_ROWS} rows)"


def lead_baseline(spec: SummarizationTask, docs: list[str], refs: list[str]) -> dict[str, Any]:
    """ROUGE of lead-k on the rows a model was scored on: the line it must clear."""
    from slmkit.tasks.extractive import lead

    k, how = lead_k(spec)
    return {"k": k, "k_chosen": how, **rouge([lead(d, k) for d in docs], refs)}


def eval_extractive(
    spec: SummarizationTask,
    method: str,
    limit: int | None,
    max_words: int,
    progress: Progress | None,
    k: int | None = None,
) -> dict[str, Any]:
    """`slm eval SUMMARY_TASK --method extractive|lead`: no model; the same figures."""
    from slmkit.tasks.extractive import ExtractiveSummarizer, lead

    docs, refs, skipped = spec.load_pairs(limit)
    timer = Timer()
    out: dict[str, Any] = {"model": None, "method": method, "n": len(docs)}
    out["skipped_summary_longer"] = skipped
    if method == "lead":
        k = k or lead_k(spec)[0]
        summaries = timer.run(lambda b: [lead(d, k) for d in b], docs, 1, progress)
        out["lead_k"] = k
    else:
        summarizer = ExtractiveSummarizer(max_words=max_words)
        summarizer.embedder  # noqa: B018 (loaded before the clock starts)
        summaries = timer.run(lambda b: [summarizer(d).summary for d in b], docs, 1, progress)
        out["max_words"] = max_words
    out.update(rouge(summaries, refs))
    out["summary_words_mean"] = round(sum(len(s.split()) for s in summaries) / len(docs), 1)
    out["lead_baseline"] = lead_baseline(spec, docs, refs)
    out.update(timer.report(len(docs)))
    return out
