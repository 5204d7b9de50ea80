"""The single-stream loop and single-sequence scoring, written once over a `BatchRunner`
and its sequence-0 `PromptCache` (runtime/cache.py)."""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Sequence

import numpy as np

from slmkit.errors import InputError
from slmkit.options import GenerationOptions
from slmkit.runtime.base import BatchRunner, Chunk, FinishReason, LogLikelihood, TokenLogprob
from slmkit.runtime.cache import PromptCache
from slmkit.runtime.decoding import SequenceOutput, log_softmax, rows_logprobs, top_logprobs
from slmkit.runtime.speculate import (
    CostModel,
    DraftModel,
    PromptLookup,
    Speculator,
    exact_caps,
)

__all__ = ["PromptCache", "loglikelihood", "prompt_logprobs", "stream"]


def stream(
    cache: PromptCache,
    tokens: Sequence[int],
    options: GenerationOptions,
    draft: DraftModel | None = None,
    costs: CostModel | None = None,
) -> Iterator[Chunk]:
    """Prefill `tokens`, then sample one token at a time until a stop condition; the last
    chunk carries the stats. With a `draft` model (and options.draft_max > 0) or
    `options.prompt_lookup`, drafts are verified several at a time (runtime/speculate.py);
    `costs` keeps what decoding costs on this model across requests."""
    if not tokens:
        raise InputError("cannot generate from an empty token list")
    runner = cache.runner
    spec = speculator(cache, tokens, options, draft, costs) if options.logprobs is None else None
    out = SequenceOutput(options, len(tokens))
    # seeded: reuse only aligned cells (greedy chats keep their full reuse: a multi-turn
    # chat would otherwise prefill its whole history again at every turn)
    out.stats.cached_tokens = cache.prefill(tokens, repeatable=options.seed is not None)
    out.prefilled()
    budget = min(options.max_tokens, runner.n_ctx - len(cache.tokens))
    k = options.logprobs
    sampler = runner.new_sampler(options)
    try:
        reason = yield from _decode(cache, sampler, out, budget, k, spec)
    finally:
        runner.free_sampler(sampler)
    if spec is not None:
        out.stats.drafted_tokens, out.stats.accepted_tokens = spec.drafted, spec.accepted
    yield out.finish(reason)


def speculator(
    cache: PromptCache,
    tokens: Sequence[int],
    options: GenerationOptions,
    draft: DraftModel | None,
    costs: CostModel | None,
) -> Speculator | None:
    """The request's speculator: the draft model if one is attached and wanted, else prompt
    lookup if asked for, else none. A greedy request drafts at most as many tokens as keep
    its text exactly the plain text (measured once per model: `exact_caps`)."""
    use_draft = draft is not None and options.draft_max > 0
    k_max = options.draft_max if use_draft else options.prompt_lookup
    if not k_max:
        return None
    costs = costs or CostModel()
    exact = options.temperature == 0.0
    if exact:
        exact_caps(costs, cache, tokens, len(tokens) + options.max_tokens)
        if max(costs.exact_rows, costs.exact_rows_long) < 2:
            return None
    source = draft if use_draft and draft is not None else PromptLookup(tokens)
    return Speculator(source, tokens, k_max, costs, exact=exact)


def _decode(
    cache: PromptCache,
    sampler: object,
    out: SequenceOutput,
    budget: int,
    k: int | None,
    spec: Speculator | None,
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
        if spec is None:
            cache.extend((tok,))
            tok = runner.sample(sampler, -1)
            continue
        for item in spec.step(cache, sampler, out, tok, budget - n):
            if isinstance(item, Chunk):
                yield item
            else:
                tok, kept, done = item
                n += kept
        if done is not None:
            return done


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
