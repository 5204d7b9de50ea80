"""Document/summary rows as prompt/response pairs for a chat base (`slm finetune cnn_dailymail
--base MODEL`). Every row is prompted exactly as `slm summarize` prompts (Summarizer.prompt
with the run's `--max-words` as the length target), so `slm summarize`, `slm eval` and the
server use and measure the tuned model unchanged:

- `--summary-input document`: the document's lead: paragraphs and sentences from the start,
  as many as fit `--max-length` beside the chat template, the instruction and the longest
  answer the Summarizer allows (news puts its point first; a model never sees a cut
  sentence).
- `--summary-input extract`: the sentences the extractive summarizer keeps at twice the word
  limit, exactly what `--method hybrid` gives the model to rewrite: a short prompt, so rows
  train several times faster than whole documents.

A built-in dataset trains on its training split only (NAME or NAME-train; NAME-test, the
rows reports are made on, is refused). A file needs `document` and `summary` columns. Rows
whose summary has more words than the document are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slmkit.errors import DataError, InputError, NoSentenceBoundaryError
from slmkit.tasks.data import SUMMARY_FILES, SummarizationTask, builtin_task, read_rows

if TYPE_CHECKING:
    from slmkit.model import Model
    from slmkit.train.causal import PairData
    from slmkit.train.config import FinetuneConfig


def summary_task(data: str) -> SummarizationTask | None:
    """The summarization rows DATA names (a built-in's training split, or a JSONL/CSV with
    `document` and `summary` columns), or None for other data."""
    if data.partition("-")[0] in SUMMARY_FILES:
        spec = builtin_task(data)  # a DataError names the splits for an unknown one
        assert isinstance(spec, SummarizationTask)
        if spec.split == "test":
            raise DataError(
                f"{data}: these rows are held back for reports and never trained on; "
                f"train on {spec.name} (its training split)"
            )
        return spec.training()
    path = Path(data)
    if path.suffix.lower() in (".jsonl", ".csv") and path.is_file():
        first = read_rows(path, required=(), on_error="fail").rows[0]
        if "document" in first and "summary" in first:
            return SummarizationTask(str(path), str(path))
    return None


def lead_that_fits(text: str, budget: int, count: Callable[[str], int]) -> str:
    """The start of the text in whole sentences (NLTK Punkt, as the extractive summarizer
    splits; line breaks kept) within `budget` tokens; only a first sentence that alone is
    too long is cut, at a word boundary."""
    from slmkit.tasks.extractive import split_sentences
    from slmkit.tasks.summarize import _split_words

    lines: list[list[str]] = []
    used = 0
    for line in text.splitlines():
        sentences = split_sentences(line)
        if sentences:
            lines.append([])
        for sentence in sentences:
            n = count(sentence) + 1
            if used + n > budget:
                if not used:
                    return _split_words(sentence, budget, count)[0]
                return "\n".join(" ".join(kept) for kept in lines if kept)
            lines[-1].append(sentence)
            used += n
    return "\n".join(" ".join(kept) for kept in lines if kept)


def _inputs(
    docs: list[str],
    cfg: FinetuneConfig,
    chat: Model,
    progress: Callable[[int], Any] | None,
) -> list[str | None]:
    """What each prompt holds for the documents: the lead that fits, or the extractive pick
    (None where the document has no sentence boundary to pick on)."""
    from slmkit.tasks.summarize import Summarizer

    if cfg.summary_input == "document":
        answer = Summarizer.answer_tokens(cfg.max_words)
        budget = cfg.tokens - Summarizer._overhead(chat, cfg.max_words) - answer
        if budget < 32:
            raise InputError(
                f"--max-length {cfg.tokens} leaves no room for a document beside a "
                f"{cfg.max_words}-word answer"
            )
        return [lead_that_fits(d, budget, chat.count_tokens) for d in docs]
    from slmkit.tasks.extractive import ExtractiveSummarizer

    extract = ExtractiveSummarizer(max_words=2 * cfg.max_words)  # as HybridSummarizer picks
    out: list[str | None] = []
    for d in docs:
        try:
            out.append(extract(d).summary)
        except NoSentenceBoundaryError:  # hybrid refuses it too, so no row
            out.append(None)
        if progress:
            progress(1)
    return out


def summary_pairs(
    task: SummarizationTask,
    cfg: FinetuneConfig,
    chat: Model,
    progress: Callable[[int], Any] | None = None,
) -> PairData:
    """Training and held-out pairs (split by cfg.seed and cfg.holdout) prompted as
    `slm summarize` prompts; `progress(n)` after each extractive pick."""
    from slmkit.tasks.summarize import Summarizer
    from slmkit.train.causal import HELD_ROWS, PairData

    docs, refs, skipped = task.load_pairs()
    order = np.random.default_rng(cfg.seed).permutation(len(docs))
    if cfg.limit:
        order = order[: cfg.limit]
    n_held = max(1, round(len(order) * cfg.holdout))
    if len(order) - n_held < 1:
        raise DataError(f"too few rows ({len(order)}) to hold out {n_held} for evaluation")
    held, train = order[:n_held][:HELD_ROWS], order[n_held:]

    def rows(idx: np.ndarray) -> tuple[list[str], list[str]]:
        texts = _inputs([docs[i] for i in idx], cfg, chat, progress)
        kept = [(t, refs[i]) for t, i in zip(texts, idx, strict=True) if t is not None]
        return [Summarizer.prompt(t, cfg.max_words) for t, _ in kept], [r for _, r in kept]

    train_prompts, train_refs = rows(train)
    held_prompts, held_refs = rows(held)
    unsplit = len(train) + len(held) - len(train_prompts) - len(held_prompts)
    if not train_prompts or not held_prompts:
        raise DataError(f"{task.name}: no document with a sentence boundary to pick from")
    return PairData(
        task.name,
        train_prompts,
        train_refs,
        held_prompts,
        held_refs,
        extra={
            "skipped_summary_longer": skipped,
            "skipped_no_sentence": unsplit,
            "summary_input": cfg.summary_input,
            "max_words": cfg.max_words,
        },
    )
