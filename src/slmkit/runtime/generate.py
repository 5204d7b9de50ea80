"""The single-stream loop and single-sequence scoring, written once over a `BatchRunner`.

`PromptCache` remembers which tokens sequence 0 of a runner holds, so a new prompt that
shares a prefix with the last one (the earlier turns of a chat) decodes only the rest.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Sequence

import numpy as np

from slmkit.errors import InputError, RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime.base import BatchRunner, Chunk, FinishReason, LogLikelihood, TokenLogprob
from slmkit.runtime.decoding import SequenceOutput, log_softmax, rows_logprobs, top_logprobs


class PromptCache:
    """Sequence 0 of a runner and the tokens whose cells it holds."""

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner
        self.tokens: list[int] = []
        self.aligned = 0  # leading tokens decoded as whole n_batch chunks from position 0

    def reset(self) -> None:
        """Forget everything (the next prompt is decoded whole)."""
        self.runner.clear()
        self.tokens = []
        self.aligned = 0

    def prefill(
        self, tokens: Sequence[int], *, all_logits: bool = False, repeatable: bool = False
    ) -> int:
        """Make the cache hold `tokens`, reusing the common prefix; return the reused count.

        The last token is always (re)decoded so its logits are fresh; with `all_logits`
        every newly decoded token keeps its logits (the caller reads them at once). A
        `repeatable` (seeded or greedy) prompt reuses only whole aligned chunks, so its
        cells are computed exactly as a fresh prefill would compute them.
        """
        keep = 0
        limit = min(len(self.tokens), len(tokens) - 1)
        while keep < limit and self.tokens[keep] == tokens[keep]:
            keep += 1
        if repeatable:
            keep = min(keep // self.runner.n_batch * self.runner.n_batch, self.aligned)
        if not self.runner.forget(0, keep):
            self.reset()
            keep = 0
        self.tokens = list(tokens[:keep])
        self.aligned = min(self.aligned, keep)
        self.extend(tokens[keep:], all_logits=all_logits, aligned=repeatable)
        return keep

    def extend(
        self, tokens: Sequence[int], *, all_logits: bool = False, aligned: bool = False
    ) -> None:
        """Decode more tokens into sequence 0 (logits for the last one, or for all), in
        pieces of n_batch; with `aligned`, cut at multiples of n_batch from position 0."""
        n_batch = self.runner.n_batch
        last = len(tokens) - 1
        start = 0
        while start < len(tokens):
            base = len(self.tokens)
            size = n_batch - base % n_batch if aligned else n_batch
            piece = tokens[start : start + size]
            entries = [
                (t, base + j, (0,), all_logits or start + j == last) for j, t in enumerate(piece)
            ]
            try:
                self.runner.decode(entries)
            except RuntimeFailure:
                self.reset()
                raise
            self.tokens.extend(piece)
            if self.aligned == base and base % n_batch == 0 and len(piece) == n_batch:
                self.aligned += n_batch
            start += len(piece)


def stream(
    cache: PromptCache, tokens: Sequence[int], options: GenerationOptions
) -> Iterator[Chunk]:
    """Prefill `tokens`, then sample one token at a time until a stop condition; the last
    chunk carries the stats. With `options.prompt_lookup`, drafts copied from the text so far
    are verified several at a time (`_Drafts`)."""
    if not tokens:
        raise InputError("cannot generate from an empty token list")
    runner = cache.runner
    out = SequenceOutput(options, len(tokens))
    # seeded: reuse only aligned cells (greedy chats keep their full reuse: a multi-turn
    # chat would otherwise prefill its whole history again at every turn)
    out.stats.cached_tokens = cache.prefill(tokens, repeatable=options.seed is not None)
    out.prefilled()
    budget = min(options.max_tokens, runner.n_ctx - len(cache.tokens))
    k = options.logprobs
    drafts = _Drafts(tokens, options.prompt_lookup) if options.prompt_lookup and k is None else None
    sampler = runner.new_sampler(options)
    try:
        reason = yield from _decode(cache, sampler, out, budget, k, drafts)
    finally:
        runner.free_sampler(sampler)
    if drafts is not None:
        out.stats.drafted_tokens, out.stats.accepted_tokens = drafts.drafted, drafts.accepted
    yield out.finish(reason)


def _decode(
    cache: PromptCache,
    sampler: object,
    out: SequenceOutput,
    budget: int,
    k: int | None,
    drafts: _Drafts | None,
) -> Generator[Chunk, None, FinishReason]:
    """Sample, emit and feed back tokens until a stop condition; returns the reason."""
    runner = cache.runner
    text = _Text(runner)
    n, tok = 0, runner.sample(sampler, -1)
    while True:
        lps = top_logprobs(runner.logits(-1), tok, k, text) if k is not None else ()
        chunk, done = out.token(tok, runner.piece(tok), runner.is_eog(tok), lps)
        if chunk is not None:
            yield chunk
        n += 1
        if done is not None or n >= budget:
            return done or "length"
        if drafts is None:
            cache.extend((tok,))
            tok = runner.sample(sampler, -1)
            continue
        for item in drafts.step(cache, sampler, out, tok, budget - n):
            if isinstance(item, Chunk):
                yield item
            else:
                tok, kept, done = item
                n += kept
        if done is not None:
            return done


class _Drafts:
    """Prompt-lookup decoding (Saxena 2023): the tokens that followed the latest earlier
    occurrence of the text's last 3 (else 2) tokens are a free draft; the model decodes the
    current token and the draft in one batch, and each row is sampled with the request's own
    sampler chain (so greedy, grammar and penalties behave as in plain decoding): drafts are
    kept while the sample equals them, the first sample that differs is the next token, and
    the rejected drafts' cells are dropped. Written here because llama.cpp's Python binding
    has no speculative API. Drafting stops for the request once 16+ drafts were proposed and
    fewer than a third were kept, so it never costs much more than plain decoding."""

    def __init__(self, tokens: Sequence[int], k: int) -> None:
        self.k, self.hist = k, list(tokens)
        self.index: dict[tuple[int, ...], int] = {}  # n-gram -> where its latest copy ends
        for end in range(2, len(self.hist)):
            self._note(end)
        self.drafted = self.accepted = 0

    def _note(self, end: int) -> None:
        """Index the 2- and 3-grams ending just before position `end` (which follows them)."""
        for n in (2, 3):
            if end >= n:
                self.index[tuple(self.hist[end - n : end])] = end

    def add(self, tok: int) -> None:
        self.hist.append(tok)
        self._note(len(self.hist) - 1)

    def propose(self, limit: int) -> list[int]:
        if self.drafted >= 16 and self.accepted * 3 < self.drafted:
            return []
        for n in (3, 2):
            end = self.index.get(tuple(self.hist[-n:]))
            if end is not None and end < len(self.hist):
                return self.hist[end : end + min(self.k, limit)]
        return []

    def step(
        self, cache: PromptCache, sampler: object, out: SequenceOutput, tok: int, room: int
    ) -> Iterator[Chunk | tuple[int, int, FinishReason | None]]:
        """Decode `tok` (+ a draft of at most room - 1 tokens), yield the kept drafts'
        chunks, then (next token, drafts kept, finish reason if one of them ended it)."""
        runner = cache.runner
        self.add(tok)
        draft = self.propose(room - 1)
        cache.extend([tok, *draft], all_logits=bool(draft))
        if not draft:
            yield runner.sample(sampler, -1), 0, None
            return
        self.drafted += len(draft)
        kept = 0
        for j in range(len(draft) + 1):
            t = runner.sample(sampler, j)
            if j == len(draft) or t != draft[j]:
                break
            kept += 1
            self.add(t)
            chunk, done = out.token(t, runner.piece(t), runner.is_eog(t))
            if chunk is not None:
                yield chunk
            if done is not None:
                self.accepted += kept
                yield t, kept, done
                return
        self.accepted += kept
        rejected = len(draft) - kept
        if rejected:
            runner.forget(0, len(cache.tokens) - rejected)
            del cache.tokens[len(cache.tokens) - rejected :]
        yield t, kept, None


class _Text:
    """Renders a token id as text for logprob reports."""

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner

    def __call__(self, tok: int) -> str:
        return self.runner.piece(tok).decode("utf-8", errors="replace")


def _scored_rows(
    cache: PromptCache, context: Sequence[int], continuation: Sequence[int]
) -> Iterator[np.ndarray]:
    """Log-softmax rows predicting each continuation token, a batch at a time, on sequence 0
    (reusing the cached prefix, keeping logits only where continuation tokens are scored)."""
    if not context or not continuation:
        raise InputError("loglikelihood needs a non-empty context and continuation")
    n = len(context) + len(continuation)
    if n > cache.runner.n_ctx:
        raise InputError(f"context+continuation is {n} tokens > n_ctx {cache.runner.n_ctx}")
    cache.prefill(context)
    # Copies: a runner's logits are views that the next decode overwrites.
    yield log_softmax(cache.runner.logits(-1).copy())  # the last context token's prediction
    rest = list(continuation[:-1])
    for start in range(0, len(rest), cache.runner.n_batch):
        piece = rest[start : start + cache.runner.n_batch]
        cache.extend(piece, all_logits=True)
        yield log_softmax(cache.runner.logit_rows(len(piece)).copy())


def loglikelihood(
    cache: PromptCache, context: Sequence[int], continuation: Sequence[int]
) -> LogLikelihood:
    """log P(continuation | context) on sequence 0."""
    rows = np.concatenate(list(_scored_rows(cache, context, continuation)))
    return score_rows(rows, continuation)


def prompt_logprobs(cache: PromptCache, tokens: Sequence[int], k: int) -> list[TokenLogprob]:
    """tokens[1:] scored as generated tokens are (see Backend.prompt_logprobs); one batch of
    rows at a time, so a long prompt never holds all its vocabulary-wide rows."""
    text, out, done = _Text(cache.runner), [], 1
    if len(tokens) < 2:
        return []
    for rows in _scored_rows(cache, tokens[:1], tokens[1:]):
        out.extend(rows_logprobs(rows, tokens[done : done + len(rows)], k, text))
        done += len(rows)
    return out


def score_rows(lp: np.ndarray, continuation: Sequence[int]) -> LogLikelihood:
    """A LogLikelihood from log-softmax rows, row i predicting continuation[i]."""
    target = np.asarray(continuation)
    vals = tuple(float(v) for v in lp[np.arange(len(target)), target])
    greedy = bool((lp.argmax(axis=1) == target).all())
    return LogLikelihood(math.fsum(vals), len(vals), greedy, vals)
