"""`generate_many` and `score_many`: batch generation and log-likelihood scoring in Python
on the continuous-batching engine."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from slmkit.errors import RuntimeFailure
from slmkit.model import Completion, Message, Model, join
from slmkit.options import GenerationOptions, make_options
from slmkit.runtime.base import Chunk, FinishReason, LogLikelihood

if TYPE_CHECKING:
    from slmkit.engine.core import Engine, Handle


def generate_many(
    model: Model,
    prompts: Sequence[str | Sequence[Message]],
    options: GenerationOptions | None = None,
    *,
    n_seq: int = 16,
    system: str | None = None,
    progress: Callable[[int], None] | None = None,
    engine: Engine | None = None,
    window: int | None = None,
    background: bool = False,
    **overrides: Any,
) -> list[Completion]:
    """Generate for every prompt (a str is completed raw, a message list is chatted), up to
    n_seq at a time in shared decode steps; results in prompt order. With `engine` (a
    server's, shared with other traffic) the prompts go to it, at most `window` of them
    queued or running at once (default: all), and it is left open; `background` puts them
    behind interactive requests in its queue and prefills."""
    from slmkit.engine.core import Engine

    opts = make_options(options, **overrides)
    token_lists = []
    for p in prompts:
        text = p if isinstance(p, str) else model.format_chat(p, system=system)
        tokens = model.backend.tokenize(text)
        model.fit(tokens, opts.model_copy(update={"overflow": "error"}))
        token_lists.append(tokens)
    own = engine is None
    if engine is None:
        n_seq = min(len(token_lists), n_seq) or 1
        # one stream per sequence, each with room for any prompt the model takes
        engine = Engine(
            model.backend,
            n_seq=n_seq,
            n_ctx=n_seq * model.n_ctx,
            max_waiting=len(token_lists),
            per_seq=True,
        )
    try:
        batch = _Batch(engine, token_lists, opts, background)
        _run_all(batch, window or len(token_lists), progress)
    finally:
        if own:
            engine.close()
    return [join(iter(c)) for c in batch.chunks]


def score_many(
    model: Model,
    pairs: Sequence[tuple[str, str]],
    *,
    engine: Engine,
    window: int | None = None,
    background: bool = False,
) -> list[LogLikelihood]:
    """log P(continuation | context) for every (context, continuation) pair, through an
    engine (a server's, shared with other traffic, left open): one request per distinct
    context, scoring all of its continuations; at most `window` of them queued or running at
    once (default: the engine's slots). Same order as `pairs`; RuntimeFailure if a request
    failed or was cancelled."""
    groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, (context, continuation) in enumerate(pairs):
        ctx, cont = model.pair_tokens(context, continuation)
        groups.setdefault(tuple(ctx), []).append((i, cont))
    batch = _ScoreBatch(engine, list(groups.items()), background)
    _run_all(batch, window or engine.scheduler.n_seq, None)
    out: list[LogLikelihood | None] = [None] * len(pairs)
    for (_, items), results in zip(batch.groups, batch.results, strict=True):
        if results is None:
            raise RuntimeFailure(f"scoring through the engine ended: {batch.reasons}")
        for (i, _), ll in zip(items, results, strict=True):
            out[i] = ll
    return [ll for ll in out if ll is not None]


class _ScoreBatch:
    """Scoring requests (one per distinct context) submitted to an engine, and their
    results (None for one that ended without them)."""

    def __init__(
        self,
        engine: Engine,
        groups: list[tuple[tuple[int, ...], list[tuple[int, list[int]]]]],
        background: bool,
    ) -> None:
        self.engine, self.groups, self.background = engine, groups, background
        self.results: list[list[LogLikelihood] | None] = [None] * len(groups)
        self.reasons: set[str] = set()
        self.done = threading.Semaphore(0)
        self.handles: list[Handle] = []

    def __len__(self) -> int:
        return len(self.groups)

    def _finish(self, i: int, results: list[LogLikelihood] | None, reason: FinishReason) -> None:
        self.results[i] = results
        if results is None:
            self.reasons.add(reason)
        self.done.release()

    def submit(self, i: int) -> None:
        context, items = self.groups[i]
        conts = [cont for _, cont in items]
        finish = functools.partial(self._finish, i)
        self.handles.append(
            self.engine.submit_score(context, conts, finish, background=self.background)
        )

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()


class _Batch:
    """Prompts submitted to an engine, at most `window` at once, and their chunks."""

    def __init__(
        self,
        engine: Engine,
        token_lists: list[list[int]],
        opts: GenerationOptions,
        background: bool,
    ) -> None:
        self.engine, self.token_lists, self.opts = engine, token_lists, opts
        self.background = background
        self.chunks: list[list[Chunk]] = [[] for _ in token_lists]
        self.done = threading.Semaphore(0)
        self.handles: list[Handle] = []

    def _emit(self, i: int, c: Chunk) -> None:
        self.chunks[i].append(c)
        if c.finish_reason is not None:
            self.done.release()

    def __len__(self) -> int:
        return len(self.token_lists)

    def submit(self, i: int) -> None:
        emit = functools.partial(self._emit, i)
        tokens = self.token_lists[i]
        handle = self.engine.submit(tokens, self.opts, emit, background=self.background)
        self.handles.append(handle)

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()


def _run_all(
    batch: _Batch | _ScoreBatch, window: int, progress: Callable[[int], None] | None
) -> None:
    """Submit the batch's requests, keeping at most `window` in the engine; wait for all."""
    n = len(batch)
    nxt = min(window, n)
    try:
        for i in range(nxt):
            batch.submit(i)
        for _ in range(n):
            batch.done.acquire()
            if progress:
                progress(1)
            if nxt < n:
                batch.submit(nxt)
                nxt += 1
    except BaseException:
        batch.cancel()  # a caller interrupted: free the (maybe shared) engine's slots
        raise
