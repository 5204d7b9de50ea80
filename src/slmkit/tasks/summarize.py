"""Summaries of documents of any length: one pass when the text fits, else map-reduce
over token-counted chunks cut on paragraph and sentence boundaries."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from slmkit.engine.batch import generate_many
from slmkit.engine.core import Engine
from slmkit.errors import ChatTemplateError, EmptyPromptError, InputError
from slmkit.model import Model

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
PROMPT_RESERVE = 96  # tokens for the instruction and the chat template around the text


@dataclass(frozen=True)
class SummaryResult:
    """The summary and what was read to make it (nothing is silently truncated)."""

    summary: str
    document_tokens: int
    tokens_read: int
    chunks: int
    levels: int
    coverage: float  # share of the document's non-space characters the model read
    # "map-reduce" (a model's summary; the token counts are the model's), "extractive"
    # (tasks/extractive.py: the counts are words, `chunks` the sentences, `picked` those kept)
    # or "hybrid" (the model's summary of the `picked` sentences; its counts are of those)
    method: str = "map-reduce"
    picked: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape `slm summarize --json` and `POST /v1/summarize` return."""
        out = {
            "summary": self.summary,
            "method": self.method,
            "document_tokens": self.document_tokens,
            "tokens_read": self.tokens_read,
            "coverage": self.coverage,
            "chunks": self.chunks,
            "levels": self.levels,
        }
        if self.method == "extractive":
            out["sentences"] = out.pop("chunks")
            out["document_words"] = out.pop("document_tokens")
            del out["tokens_read"], out["levels"]
        if self.method != "map-reduce":  # hybrid: the counts are of the kept sentences
            out["picked"] = list(self.picked)
        return out


def _content(text: str) -> int:
    return sum(len(w) for w in text.split())


def split_text(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Cut text into pieces of at most max_tokens, preferring paragraph, then sentence,
    then word boundaries; the pieces joined with whitespace hold every word."""
    units: list[str] = []
    for para in re.split(r"\n\s*\n|\n", text):
        if not para.strip():
            continue
        if count(para) <= max_tokens:
            units.append(para.strip())
            continue
        for sent in _SENTENCE.split(para):
            if count(sent) <= max_tokens:
                units.append(sent.strip())
            else:
                units.extend(_split_words(sent, max_tokens, count))
    chunks: list[str] = []
    cur: list[str] = []
    cur_tokens = 0
    for unit in units:
        n = count(unit) + 1
        if cur and cur_tokens + n > max_tokens:
            chunks.append("\n".join(cur))
            cur, cur_tokens = [], 0
        cur.append(unit)
        cur_tokens += n
    if cur:
        chunks.append("\n".join(cur))
    return chunks


def _split_words(text: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    for word in text.split():
        if cur and count(" ".join([*cur, word])) > max_tokens:
            out.append(" ".join(cur))
            cur = []
        cur.append(word)
    if cur:
        out.append(" ".join(cur))
    return out


class Summarizer:
    """Summarize with a chat model; `max_words` is the length target of the final summary."""

    def __init__(
        self,
        model: Model,
        *,
        max_words: int = 60,
        chunk_tokens: int | None = None,
        temperature: float = 0.0,
        engine: Engine | None = None,
        window: int | None = None,
        prompt_lookup: int = 0,
        focus: str | None = None,
    ) -> None:
        """With an `engine` (continuous batching), the chunks of a level are summarized
        concurrently in shared decode steps, at most `window` at once (a server passes its
        own engine and half its slots, so chat traffic keeps its turn). `prompt_lookup`:
        drafts copied from the text (GenerationOptions; one chunk at a time only). `focus`:
        a question; each part is asked what it says about it and the last step answers it
        (query-focused map-reduce: the whole-document baseline of `slm eval qmsum_qa`)."""
        if max_words < 5:
            raise InputError("max_words must be at least 5")
        self.model, self.focus = model, focus
        self.max_words = max_words
        self.max_tokens = self.answer_tokens(max_words)
        # with an engine, chunks small enough to share its batch
        n_ctx = model.n_ctx if engine is None else min(model.n_ctx, engine.batched_request)
        budget = n_ctx - self.max_tokens - self._overhead(model, max_words, focus)
        if budget < 64:
            raise InputError(f"context {n_ctx} is too small to summarize into {max_words} words")
        self.chunk_tokens = min(chunk_tokens or budget, budget)
        self.temperature = temperature
        self.engine, self.window = engine, window
        self.prompt_lookup = prompt_lookup

    @staticmethod
    def answer_tokens(words: int) -> int:
        """The most tokens a summary of `words` words may take (generation stops there)."""
        return int(words * 2) + 16

    @staticmethod
    def prompt(text: str, words: int, part: bool = False, focus: str | None = None) -> str:
        if focus and part:
            return (
                f"Write what this part of a longer text says about the question below, in at "
                f"most {words} words. If it says nothing about it, reply: nothing.\n\n"
                f"Question: {focus}\n\nText:\n{text}"
            )
        if focus:
            from slmkit.tasks.ask import NOT_FOUND

            return (
                f"Answer the question from the text below in at most {words} words. If the "
                f"text does not contain the answer, reply exactly: {NOT_FOUND}\n\n"
                f"Question: {focus}\n\nText:\n{text}"
            )
        what = "this part of a longer document" if part else "this document"
        return (
            f"Summarize {what} in at most {words} words. Keep names, numbers and "
            f"decisions.\n\n{text}"
        )

    @classmethod
    def _overhead(cls, model: Model, words: int, focus: str | None = None) -> int:
        """Tokens the instruction and chat template add around a chunk (at least the
        PROMPT_RESERVE that was measured on the catalog's models)."""
        try:
            content = cls.prompt("", words, True, focus)
            wrapped = model.format_chat([{"role": "user", "content": content}])
        except ChatTemplateError:
            return PROMPT_RESERVE
        return max(PROMPT_RESERVE, model.count_tokens(wrapped) + 16)

    def _ask(self, text: str, words: int, part: bool) -> str:
        return self._ask_all([text], words, part)[0]

    def _ask_all(
        self,
        texts: list[str],
        words: int,
        part: bool,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Summaries of `texts`: one after another on the model's own context, or all at
        once through the engine."""
        if self.engine is None:
            outs = []
            for i, text in enumerate(texts):
                prompt = self.prompt(text, words, part, self.focus)
                got = self.model.chat(
                    prompt,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    prompt_lookup=self.prompt_lookup,
                )
                outs.append(got.text.strip())
                if progress:
                    progress(i + 1, len(texts))
            return outs
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], len(texts))

        msgs = [
            [{"role": "user", "content": self.prompt(t, words, part, self.focus)}] for t in texts
        ]
        got_all = generate_many(
            self.model,
            msgs,
            engine=self.engine,
            window=self.window,
            background=True,  # bulk work: chat requests beside it go first
            progress=tick,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        return [c.text.strip() for c in got_all]

    def __call__(
        self, text: str, progress: Callable[[int, int], None] | None = None
    ) -> SummaryResult:
        if not text.strip():
            raise EmptyPromptError("the document is empty")
        count = self.model.count_tokens
        total = count(text)
        if total <= self.chunk_tokens:
            return SummaryResult(self._ask(text, self.max_words, False), total, total, 1, 1, 1.0)
        pieces = split_text(text, self.chunk_tokens, count)
        read = sum(count(p) for p in pieces)
        coverage = sum(_content(p) for p in pieces) / _content(text)
        n_chunks, levels = len(pieces), 1
        while True:
            partials = self._ask_all(pieces, self.max_words, True, progress)
            joined = "\n".join(partials)
            levels += 1
            if count(joined) <= self.chunk_tokens:
                summary = self._ask(joined, self.max_words, False)
                return SummaryResult(summary, total, read, n_chunks, levels, coverage)
            pieces = split_text(joined, self.chunk_tokens, count)


@contextlib.contextmanager
def summarizer_for(
    model: Model, *, max_words: int = 60, parallel: int = 1, prompt_lookup: int = 0
) -> Iterator[Summarizer]:
    """A Summarizer that summarizes up to `parallel` chunks at once on its own engine (closed
    on exit); parallel=1: one by one on the model's own context (with `prompt_lookup`)."""
    if parallel <= 1:
        yield Summarizer(model, max_words=max_words, prompt_lookup=prompt_lookup)
        return
    engine = Engine(model.backend, n_seq=parallel, n_ctx=parallel * model.n_ctx, per_seq=True)
    try:
        yield Summarizer(model, max_words=max_words, engine=engine)
    finally:
        engine.close()


def summarize(model: Model, text: str, *, max_words: int = 60, parallel: int = 1) -> SummaryResult:
    """Summarize one document of any length with a loaded chat model; `parallel` > 1
    summarizes that many chunks at once in shared decode steps."""
    with summarizer_for(model, max_words=max_words, parallel=parallel) as summarizer:
        return summarizer(text)
