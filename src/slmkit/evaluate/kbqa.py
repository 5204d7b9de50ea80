"""`slm eval qmsum_qa`: grounded question answering over long meeting transcripts.

Each of the 35 validation meetings (dev_documents.jsonl) becomes a file; knowledge bases are
built from them in a temporary store with the chosen embedder: one per meeting
(`--kb-mode meeting`: a question searches its own meeting) or one over all meetings (`all`).
For every question: retrieval recall@k of the gold evidence turns (a turn counts as found when
a retrieved chunk of the right meeting overlaps it) and the best similarity. With a model, also
the answer (tasks/ask.py): ROUGE-1/2/L against the reference on answerable rows, citation
precision (cited excerpts that overlap a gold turn), refusal precision/recall/F1 on the 30
unanswerable rows (asked of an unrelated meeting), latency p50/p95, items/s.

Methods (`--method`), for the side-by-side the issue asks for: `kb` (retrieval, the default),
`whole` (no retrieval: the whole meeting through the map-reduce summarizer focused on the
question, tasks/summarize.py's `focus`), `none` (the model answers from the question alone).
Each is told to reply tasks/ask.py's NOT_FOUND when it cannot answer, so refusals are counted
the same way for all three.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slmkit.catalog.memory import own_peak_rss_mb
from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.evaluate import Progress, Timer, rouge
from slmkit.settings import Settings
from slmkit.tasks.data import dataset_file

KbMode = Literal["meeting", "all"]
Method = Literal["kb", "whole", "none"]
METHODS = ("kb", "whole", "none")
ANSWER_WORDS = 80  # QMSum's reference answers run 40-100 words


def _rows(limit: int | None) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    rows = [json.loads(x) for x in dataset_file("qmsum_qa", "dev.jsonl").read_text().splitlines()]
    docs = [
        json.loads(x)
        for x in dataset_file("qmsum_qa", "dev_documents.jsonl").read_text().splitlines()
    ]
    if limit and limit < len(rows):  # spread over meetings and both kinds of row
        rows = [rows[int(i * len(rows) / limit)] for i in range(limit)]
    return rows, {d["id"]: d for d in docs}


def gold_spans(row: dict[str, Any], doc: dict[str, Any]) -> list[tuple[int, int]]:
    """Character spans of the row's gold evidence turns (spans' turn indices are inclusive)."""
    offs, text = doc["turn_offsets"], doc["document"]
    out = []
    for a, b in row["relevant_spans"]:
        for i in range(a, b + 1):
            end = offs[i + 1] - 1 if i + 1 < len(offs) else len(text)
            out.append((offs[i], end))
    return out


def _overlaps(span: tuple[int, int], hit: Any) -> bool:
    return hit.start < span[1] and span[0] < hit.end


def recall_at_k(row: dict[str, Any], doc: dict[str, Any], hits: list[Any], path: str) -> float:
    gold = gold_spans(row, doc)
    own = [h for h in hits if h.path == path]
    return sum(any(_overlaps(g, h) for h in own) for g in gold) / max(1, len(gold))


def _build(
    docs: dict[str, dict[str, Any]], mode: KbMode, folder: Path, embedder: Any
) -> tuple[Store, dict[str, Path]]:
    from slmkit.tasks import kb as kbs

    files = {}
    for mid, d in docs.items():
        files[mid] = folder / "docs" / f"{mid}.txt"
        files[mid].parent.mkdir(parents=True, exist_ok=True)
        files[mid].write_text(d["document"], encoding="utf-8")
    store = Store(folder / "store", Settings(home=folder / "store"))
    if mode == "all":
        kbs.create("all", [folder / "docs"], store=store, embedder=embedder)
    else:
        for mid, f in files.items():
            kbs.create(mid.lower().replace("_", "-"), [f], store=store, embedder=embedder)
    return store, {m: f.resolve() for m, f in files.items()}


def evaluate_qmsum_qa(
    *,
    model: str | None,
    kb_mode: KbMode = "meeting",
    k: int = 5,
    limit: int | None = None,
    embedder: str = "minilm-int8",
    min_similarity: float | None = None,
    progress: Progress | None = None,
    method: Method = "kb",
    n_ctx: int | None = None,
    rerank: str | None = None,
    widen: int = 0,
) -> dict[str, Any]:
    """Retrieval figures for every row; answer figures too when `model` is given. `rerank`:
    a model id whose log-likelihood re-ranks the excerpts (tasks/ask.py's `rerank`), for the
    retrieval figures and the answers."""
    if method != "kb":
        if model is None:
            raise InputError(f"--method {method} answers questions: it needs a model")
        rows, docs = _rows(limit)
        out = _run(rows, docs, {}, None, _Answerer(model, method, k, 0.0, n_ctx), progress, k=k)
        out.update(task="qmsum_qa", method=method, n=len(rows), peak_rss_mb=_rss())
        return out
    from slmkit.tasks.ask import MIN_SIMILARITY
    from slmkit.tasks.embed import load_embedder
    from slmkit.tasks.kb import KnowledgeBase

    floor = MIN_SIMILARITY if min_similarity is None else min_similarity
    rows, docs = _rows(limit)
    emb = load_embedder(embedder, store=Store())
    if kb_mode == "meeting":  # only the meetings asked about
        docs = {m: d for m, d in docs.items() if m in {r["meeting"] for r in rows}}
    with tempfile.TemporaryDirectory(prefix="slmkit-qmsum-") as tmp:
        store, paths = _build(docs, kb_mode, Path(tmp), emb)
        kbs = {}

        def kb_for(mid: str) -> KnowledgeBase:
            name = "all" if kb_mode == "all" else mid.lower().replace("_", "-")
            if name not in kbs:
                kbs[name] = KnowledgeBase(name, store=store, embedder=emb)
            return kbs[name]

        answerer = _Answerer(model, "kb", k, floor, n_ctx, bool(rerank), widen) if model else None
        scorer = _scorer(rerank, answerer, n_ctx)
        opts = {"k": k, "floor": floor, "scorer": scorer, "widen": widen}
        result = _run(rows, docs, paths, kb_for, answerer, progress, **opts)
        for base in kbs.values():
            base.close()
    result.update(task="qmsum_qa", method="kb", kb_mode=kb_mode, k=k, embedder=embedder)
    result.update(rerank=rerank, widen=widen)
    result.update(n=len(rows), peak_rss_mb=_rss())
    return result


def _scorer(rerank: str | None, answerer: _Answerer | None, n_ctx: int | None) -> Any:
    """The re-ranking model's scorer (the answering model's own when they are the same)."""
    from slmkit.loading import load
    from slmkit.tasks.ask import model_scorer

    if not rerank:
        return None
    if answerer is not None and answerer.model.id == rerank:
        return model_scorer(answerer.model)
    return model_scorer(load(rerank, pull=False, n_ctx=n_ctx))


def _rss() -> float:
    return round(own_peak_rss_mb(), 1)


class _Answerer:
    """One way of answering a row (see METHODS), with its model loaded once."""

    def __init__(
        self,
        model_id: str,
        method: Method,
        k: int,
        floor: float,
        n_ctx: int | None,
        rerank: bool = False,
        widen: int = 0,
    ) -> None:
        from slmkit.loading import load

        self.method, self.k, self.floor, self.rerank = method, k, floor, rerank
        self.widen = widen
        self.model = load(model_id, pull=False, n_ctx=n_ctx)

    def __call__(self, row: dict[str, Any], doc: dict[str, Any], kb: Any) -> Any:
        from slmkit.options import GenerationOptions
        from slmkit.tasks.ask import NOT_FOUND, Answer, ask, is_refusal
        from slmkit.tasks.summarize import Summarizer

        q = row["query"]
        if self.method == "kb":
            return ask(
                q,
                kb=kb,
                model=self.model,
                k=self.k,
                min_similarity=self.floor,
                rerank=self.rerank,
                widen=self.widen,
            )
        if self.method == "whole":
            text = Summarizer(self.model, max_words=ANSWER_WORDS, focus=q)(doc["document"]).summary
        else:
            rule = f"Answer in at most {ANSWER_WORDS} words. If you do not know, reply exactly: "
            messages = [
                {"role": "system", "content": rule + NOT_FOUND},
                {"role": "user", "content": q},
            ]
            opts = GenerationOptions(temperature=0, max_tokens=256)
            text = self.model.chat(messages, options=opts).text.strip()
        return Answer(text, [], is_refusal(text), 0.0)

    def close(self) -> None:
        self.model.close()


def _run(
    rows: list[dict[str, Any]],
    docs: dict[str, dict[str, Any]],
    paths: dict[str, Path],
    kb_for: Any,
    answerer: _Answerer | None,
    progress: Progress | None,
    *,
    k: int,
    floor: float = 0.0,
    scorer: Any = None,
    widen: int = 0,
) -> dict[str, Any]:
    """Retrieval figures (with knowledge bases) and answer figures (with an answerer)."""
    from slmkit.tasks.ask import retrieve

    recalls: list[float] = []
    scored: list[tuple[str, bool, float]] = []  # meeting, unanswerable, best similarity
    shown: list[float] = []  # characters of excerpts per question
    answers: list[tuple[dict[str, Any], Any]] = []
    timer = Timer()
    for row in rows:
        kb = kb_for(row["meeting"]) if kb_for else None
        if kb is not None:
            hits, confidence = retrieve(row["query"], kb, k, -1.0, scorer, widen)
            shown.append(sum(len(h.text) for h in hits))
            scored.append((row["meeting"], row["unanswerable"], confidence))
            if not row["unanswerable"]:
                doc = docs[row["meeting"]]
                recalls.append(recall_at_k(row, doc, hits, str(paths[row["meeting"]])))
        if answerer is not None:
            t0 = time.perf_counter()
            answers.append((row, answerer(row, docs[row["meeting"]], kb)))
            timer.per_item.append(time.perf_counter() - t0)
            timer.total += timer.per_item[-1]
        if progress:
            progress(1)
    out = _retrieval(recalls, scored, k, floor) if kb_for else {}
    if shown:
        out["excerpt_chars_mean"] = round(float(np.mean(shown)))
    if answerer is not None:
        out.update(_answers(answers, docs, paths), model=answerer.model.id)
        out.update(timer.report(len(answers)))
        out["rougeL"] = out.get("answer_rougeL")  # the headline `slm bench` plots
        answerer.close()
    return out


def _retrieval(
    recalls: list[float], scored: list[tuple[str, bool, float]], k: int, floor: float
) -> dict[str, Any]:
    conf = {u: [c for _, x, c in scored if x == u] for u in (False, True)}
    return {
        f"retrieval_recall_at_{k}": _mean(recalls),
        f"evidence_hit_at_{k}": _mean([float(r > 0) for r in recalls]),
        "similarity_answerable_mean": _mean(conf[False]),
        "similarity_unanswerable_mean": _mean(conf[True]),
        "retrieval_refusal": _refusals(
            [c < floor for c in conf[False]], [c < floor for c in conf[True]]
        ),
        "min_similarity": floor,
        "refusal_calibration": calibrate(scored, floor),
    }


def calibrate(scored: list[tuple[str, bool, float]], floor: float) -> dict[str, Any] | None:
    """The refusal threshold that maximises refusal F1 on the meetings at even positions (in
    sorted order), and the F1 it and the default `floor` give on the other meetings: a
    threshold chosen on one set of meetings and judged on another, as cascades calibrate on
    a tuning split."""
    meetings = sorted({m for m, _, _ in scored})
    tune_set = set(meetings[::2])
    tune = [(u, c) for m, u, c in scored if m in tune_set]
    test = [(u, c) for m, u, c in scored if m not in tune_set]
    if not any(u for u, _ in tune) or not any(not u for u, _ in tune) or not test:
        return None

    def f1(rows: list[tuple[bool, float]], t: float) -> dict[str, float | None]:
        return _refusals([c < t for u, c in rows if not u], [c < t for u, c in rows if u])

    cuts = sorted({c for _, c in tune})
    candidates = [(a + b) / 2 for a, b in zip(cuts, cuts[1:], strict=False)] or cuts
    best = max(candidates, key=lambda t: (f1(tune, t)["f1"] or 0.0, -abs(t - floor)))
    return {
        "threshold": round(best, 4),
        "tune_rows": len(tune),
        "tune": f1(tune, best),
        "test_rows": len(test),
        "test": f1(test, best),
        "test_at_default": f1(test, floor),
    }


def _mean(xs: list[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None


def _refusals(ans_refused: list[bool], un_refused: list[bool]) -> dict[str, float | None]:
    """Precision/recall/F1 of refusing, the unanswerable rows being the positives."""
    tp, fp = sum(un_refused), sum(ans_refused)
    fn = len(un_refused) - tp
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p and r else (0.0 if r is not None else None)
    return {
        "precision": None if p is None else round(p, 4),
        "recall": None if r is None else round(r, 4),
        "f1": None if f1 is None else round(f1, 4),
    }


def _answers(
    answers: list[tuple[dict[str, Any], Any]],
    docs: dict[str, dict[str, Any]],
    paths: dict[str, Path],
) -> dict[str, Any]:
    answerable = [(r, a) for r, a in answers if not r["unanswerable"]]
    cited = good = 0
    for r, a in answerable:
        if a.refused:
            continue
        gold = gold_spans(r, docs[r["meeting"]])
        path = str(paths.get(r["meeting"], ""))
        for c in a.citations:
            cited += 1
            good += c.path == path and any(c.start < g[1] and g[0] < c.end for g in gold)
    scores = (
        rouge([a.text for _, a in answerable], [r["answer"] for r, _ in answerable])
        if answerable
        else {}
    )
    return {
        **{f"answer_{k}": v for k, v in scores.items()},
        "citation_precision": round(good / cited, 4) if cited else None,
        "citations": cited,
        "refusal": _refusals(
            [a.refused for r, a in answers if not r["unanswerable"]],
            [a.refused for r, a in answers if r["unanswerable"]],
        ),
    }
