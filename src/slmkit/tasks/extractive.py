"""Extractive summaries: sentences taken from the document itself, no generator.

`lead(text, k)` is the first k sentences, the baseline every summary score is read against.
`ExtractiveSummarizer` scores sentences by how central they are to the document (cosine to
the mean of the sentence embeddings, MiniLM by default) with a bias towards the start, then
picks them by maximal marginal relevance (a sentence close to one already picked counts for
less) until the word budget is spent, and returns them in document order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from slmkit.errors import EmptyPromptError, InputError, NoSentenceBoundaryError
from slmkit.tasks.summarize import SummaryResult

if TYPE_CHECKING:
    from slmkit.model import Model
    from slmkit.tasks.embed import Embedder

# Punkt learns abbreviations from training text; NLTK's trained English model is a separate
# download (nltk_data) that an offline machine lacks, so the common ones are given here.
ABBREVIATIONS = (
    "mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt cmdr gov sen rep rev hon pres "
    "u.s u.k u.n e.g i.e etc vs inc ltd co corp dept univ no jan feb mar apr jun jul aug "
    "sep sept oct nov dec a.m p.m approx est fig al"
).split()
MIN_WORDS = 4  # shorter sentences ("Yep .", "CNN --") are never picked unless nothing else is
EMBED_BATCH = 256


@functools.cache
def _punkt() -> object:
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> list[str]:
    """Sentences in document order: lines first (paragraphs, transcript turns, a list's
    items), then NLTK's Punkt splitter within each line."""
    tok = _punkt()
    out: list[str] = []
    for line in text.splitlines():
        if line.strip():
            out.extend(s.strip() for s in tok.tokenize(line.strip()) if s.strip())  # type: ignore[attr-defined]
    return out


def lead(text: str, k: int = 3) -> str:
    """The first k sentences of the text (the lead-k baseline)."""
    if k < 1:
        raise InputError("lead-k needs k >= 1")
    return " ".join(split_sentences(text)[:k])


def _words(s: str) -> int:
    return len(s.split())


class ExtractiveSummarizer:
    """Central sentences with a lead bias, picked by maximal marginal relevance.

    relevance_i = (1 - lead_weight) * cos(e_i, centroid) + lead_weight * exp(-i / lead_scale)
    pick = argmax relevance_i - diversity * max_{j picked} cos(e_i, e_j)

    Sentences are added while the summary stays within `max_words` (the first one is always
    taken). `embedder`: any tasks.embed embedder; MiniLM int8 by default, loaded on first use."""

    method = "extractive"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        max_words: int = 60,
        lead_weight: float = 0.5,
        lead_scale: float = 4.0,
        diversity: float = 0.5,
    ) -> None:
        if max_words < 5:
            raise InputError("max_words must be at least 5")
        if not 0.0 <= lead_weight <= 1.0 or diversity < 0 or lead_scale <= 0:
            raise InputError("lead_weight must be in [0, 1], diversity >= 0, lead_scale > 0")
        self._embedder = embedder
        self.max_words, self.lead_weight = max_words, lead_weight
        self.lead_scale, self.diversity = lead_scale, diversity

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from slmkit.tasks.embed import load_embedder

            self._embedder = load_embedder("minilm-int8")
        return self._embedder

    def _embed(
        self, sentences: Sequence[str], progress: Callable[[int, int], None] | None
    ) -> np.ndarray:
        parts = []
        for start in range(0, len(sentences), EMBED_BATCH):
            parts.append(np.asarray(self.embedder.embed(sentences[start : start + EMBED_BATCH])))
            if progress:
                progress(min(start + EMBED_BATCH, len(sentences)), len(sentences))
        emb = np.concatenate(parts).astype(np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.where(norms == 0, 1.0, norms)

    def select(self, sentences: Sequence[str], emb: np.ndarray) -> list[int]:
        """Indices of the sentences to keep, in document order."""
        n = len(sentences)
        centroid = emb.mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        position = np.exp(-np.arange(n) / self.lead_scale)
        relevance = (1 - self.lead_weight) * (emb @ centroid) + self.lead_weight * position
        words = np.array([_words(s) for s in sentences])
        eligible = words >= MIN_WORDS
        if not eligible.any():
            eligible[:] = True
        redundancy = np.zeros(n, dtype=np.float32)
        picked: list[int] = []
        used = 0
        while True:
            gain = np.where(eligible, relevance - self.diversity * redundancy, -math.inf)
            best = int(np.argmax(gain))
            if gain[best] == -math.inf:
                break
            eligible[best] = False
            if picked and used + words[best] > self.max_words:
                continue  # too long for what is left of the budget; a shorter one may fit
            picked.append(best)
            used += int(words[best])
            redundancy = np.maximum(redundancy, emb @ emb[best])
            if used >= self.max_words:
                break
        return sorted(picked)

    def __call__(
        self, text: str, progress: Callable[[int, int], None] | None = None
    ) -> SummaryResult:
        if not text.strip():
            raise EmptyPromptError("the document is empty")
        sentences = split_sentences(text)
        total = _words(text)
        if len(sentences) == 1 and total > 2 * self.max_words:
            raise NoSentenceBoundaryError(
                f"no sentence boundary in a document of {total} words: an extractive summary "
                "picks whole sentences (use a model's summary instead)"
            )
        picked = self.select(sentences, self._embed(sentences, progress))
        summary = " ".join(sentences[i] for i in picked)
        return SummaryResult(
            summary, total, total, len(sentences), 0, 1.0, method=self.method, picked=tuple(picked)
        )


class HybridSummarizer:
    """Extract, then rewrite: the extractive summarizer keeps the document's most central
    sentences (up to `select_words`, twice the target by default) and the model summarizes
    only those into `max_words`: a short prompt instead of the whole document, so a faster
    prefill and less to get wrong. Any Summarizer keyword (engine, window, ...) passes on."""

    method = "hybrid"

    def __init__(
        self,
        model: Model,
        embedder: Embedder | None = None,
        *,
        max_words: int = 60,
        select_words: int | None = None,
        **summarizer: Any,
    ) -> None:
        from slmkit.tasks.summarize import Summarizer

        self.extract = ExtractiveSummarizer(embedder, max_words=select_words or 2 * max_words)
        self.rewrite = Summarizer(model, max_words=max_words, **summarizer)

    def __call__(
        self, text: str, progress: Callable[[int, int], None] | None = None
    ) -> SummaryResult:
        picked = self.extract(text, progress)
        res = self.rewrite(picked.summary)
        # the token counts are those of the kept sentences, which the model read in full
        return replace(res, method=self.method, picked=picked.picked)
