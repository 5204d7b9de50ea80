"""Grounded answers: retrieve a knowledge base's best excerpts for a question, have a model
answer from them alone with numbered citations ([1], [2]), and return the citations as data
(file, character span, text). When retrieval finds nothing close enough (the best cosine
similarity under `min_similarity`), the answer is the explicit refusal without asking the
model; a model that says the documents do not hold the answer is a refusal too."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.model import Message, Model
from slmkit.options import GenerationOptions
from slmkit.tasks.kb import Hit, KnowledgeBase

NOT_FOUND = "The documents do not contain the answer."
MIN_SIMILARITY = 0.25  # MiniLM cosine; below it retrieval found nothing on the question
MAX_QUESTION_CHARS = 2000
SYSTEM = (
    "You answer questions using only the numbered excerpts you are given. After each sentence, "
    "cite the excerpts it uses by number in brackets, like [1] or [2][3]. If they answer only "
    "part of the question, answer that part. If the excerpts say nothing about the question, "
    f"reply exactly: {NOT_FOUND}"
)
Scorer = Callable[[list[tuple[str, str]]], list[float]]
RERANK_POOL = 3  # candidates retrieved per excerpt shown when re-ranking
RERANK_PROMPT = "Passage: {text}\n\nA question this passage answers:"
_CITE = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[a-z0-9]{3,}")


@dataclass(frozen=True)
class Citation:
    """An excerpt an answer cites: its number in the prompt and where it comes from."""

    n: int
    path: str
    start: int
    end: int
    text: str
    inferred: bool = False  # the model cited nothing; matched to the sentence by its words

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "file": self.path,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "inferred": self.inferred,
        }


@dataclass
class Answer:
    """A grounded answer: its text, the excerpts it cites, whether it is a refusal, the
    retrieval's best similarity, and every excerpt the model was shown."""

    text: str
    citations: list[Citation]
    refused: bool
    confidence: float
    excerpts: list[Hit] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "refused": self.refused,
            "confidence": round(self.confidence, 4),
            "citations": [c.as_dict() for c in self.citations],
            "excerpts": [h.as_dict() for h in self.excerpts],
            "seconds": round(self.seconds, 3),
        }


def answer_messages(question: str, hits: list[Hit]) -> list[Message]:
    """The chat the model answers: the rules, then the numbered excerpts and the question."""
    parts = [f"[{i}] (from {Path(h.path).name})\n{h.text.strip()}" for i, h in enumerate(hits, 1)]
    user = "Excerpts:\n\n" + "\n\n".join(parts) + f"\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def is_refusal(text: str) -> bool:
    t = text.lower()
    return "do not contain the answer" in t or "does not contain the answer" in t


def citations(text: str, hits: list[Hit]) -> list[Citation]:
    """The excerpts the answer cites by number (each once, in order of first citation); if
    it cites none, each sentence's best excerpt by shared words (at least 3 and 30%)."""
    seen = [int(n) for n in _CITE.findall(text) if 1 <= int(n) <= len(hits)]
    nums = list(dict.fromkeys(seen))
    if nums:
        return [_cite(n, hits[n - 1]) for n in nums]
    out: dict[int, Citation] = {}
    words_of = [set(_WORD.findall(h.text.lower())) for h in hits]
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        words = set(_WORD.findall(sentence.lower()))
        if len(words) < 3 or not hits:
            continue
        best = max(range(len(hits)), key=lambda i: len(words & words_of[i]))
        shared = len(words & words_of[best])
        if shared >= 3 and shared >= 0.3 * len(words):
            out.setdefault(best + 1, _cite(best + 1, hits[best], inferred=True))
    return list(out.values())


def _cite(n: int, h: Hit, inferred: bool = False) -> Citation:
    return Citation(n, h.path, h.start, h.end, h.text, inferred)


def _check(question: str) -> str:
    if not question.strip():
        raise InputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(
            f"the question is {len(question)} characters; at most {MAX_QUESTION_CHARS}"
        )
    return question


def retrieve(
    question: str,
    kb: KnowledgeBase,
    k: int,
    min_similarity: float,
    rerank_with: Scorer | None = None,
    widen: int = 0,
) -> tuple[list[Hit], float]:
    """The excerpts to show (none when retrieval is not confident) and the best similarity.
    With `rerank_with` (a model's scorer), RERANK_POOL times as many candidates are retrieved
    and the model's own log-likelihood picks the k shown (`rerank`). `widen`: each excerpt
    with that many neighbouring chunks on either side (KnowledgeBase.widen)."""
    hits = kb.query(_check(question), k * RERANK_POOL if rerank_with else k)
    confidence = max((h.similarity for h in hits if h.similarity is not None), default=0.0)
    if confidence < min_similarity:
        return [], confidence
    hits = rerank(question, hits, rerank_with, k) if rerank_with else hits
    return kb.widen(hits, widen), confidence


def rerank(question: str, hits: list[Hit], score: Scorer, k: int) -> list[Hit]:
    """The k excerpts under which the model finds the question most likely: log P(question |
    excerpt) (unsupervised passage re-ranking, Sachan et al. 2022; no cross-encoder to ship:
    the answering model does it). `score`: model_scorer(model), or the server's engine."""
    if len(hits) <= 1:
        return hits[:k]
    pairs = [(RERANK_PROMPT.format(text=h.text.strip()), " " + question.strip()) for h in hits]
    scores = score(pairs)
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [hits[i] for i in order[:k]]


def model_scorer(model: Model) -> Scorer:
    """log P(continuation | context) for each pair, in the model's shared batches."""
    return lambda pairs: [ll.logprob for ll in model.loglikelihood_many(pairs)]


def ask_stream(
    question: str,
    *,
    kb: str | KnowledgeBase,
    model: Model,
    k: int = 4,
    min_similarity: float = MIN_SIMILARITY,
    options: GenerationOptions | None = None,
    store: Store | None = None,
    rerank: bool = False,
    widen: int = 0,
) -> Iterator[str | Answer]:
    """The answer's text as it is generated, then the finished `Answer` as the last item.
    `rerank`: the model re-orders three times as many candidates first (see `rerank`);
    `widen`: each excerpt shown with that many neighbouring chunks on either side."""
    t0 = time.perf_counter()
    base = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase(kb, store=store)
    try:
        scorer = model_scorer(model) if rerank else None
        hits, confidence = retrieve(question, base, k, min_similarity, scorer, widen)
    finally:
        if base is not kb:
            base.close()
    if not hits:
        yield NOT_FOUND
        yield Answer(NOT_FOUND, [], True, confidence, [], time.perf_counter() - t0)
        return
    opts = options or GenerationOptions(temperature=0, max_tokens=256)
    text = []
    for chunk in model.stream(answer_messages(question, hits), options=opts):
        if chunk.text:
            text.append(chunk.text)
            yield chunk.text
    full = "".join(text).strip()
    refused = is_refusal(full)
    cited = [] if refused else citations(full, hits)
    yield Answer(full, cited, refused, confidence, hits, time.perf_counter() - t0)


def ask(
    question: str,
    *,
    kb: str | KnowledgeBase,
    model: Model,
    k: int = 4,
    min_similarity: float = MIN_SIMILARITY,
    options: GenerationOptions | None = None,
    store: Store | None = None,
    rerank: bool = False,
    widen: int = 0,
) -> Answer:
    """A grounded answer to `question` from knowledge base `kb` (see module docstring)."""
    items = list(
        ask_stream(
            question,
            kb=kb,
            model=model,
            k=k,
            min_similarity=min_similarity,
            options=options,
            store=store,
            rerank=rerank,
            widen=widen,
        )
    )
    answer = items[-1]
    assert isinstance(answer, Answer)
    return answer
