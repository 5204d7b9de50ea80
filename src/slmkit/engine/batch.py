"""`generate_many`: batch generation in Python on the continuous-batching engine."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from slmkit.model import Completion, Message, Model, join
from slmkit.options import GenerationOptions, make_options
from slmkit.runtime.base import Chunk

if TYPE_CHECKING:
    from slmkit.engine.core import Engine, Handle


def generate_many(
    model: Model,
    prompts: Sequence[str | Sequence[Message]],
    *,
    n_seq: int = 16,
    system: str | None = None,
    progress: Callable[[int], None] | None = None,
    engine: Engine | None = None,
    window: int | None = None,
    background: bool = False,
    **options: Any,
) -> list[Completion]:
    """Generate for every prompt (a str is completed raw, a message list is chatted), up to
    n_seq at a time in shared decode steps; results in prompt order. With `engine` (a
    server's, shared with other traffic) the prompts go to it, at most `window` of them
    queued or running at once (default: all), and it is left open; `background` puts them
    behind interactive requests in its queue and prefills."""
    from slmkit.engine.core import Engine

    opts = make_options(**options)
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
        chunks = _run_all(batch, window or len(token_lists), progress)
    finally:
        if own:
            engine.close()
    return [join(iter(c)) for c in chunks]


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

    def submit(self, i: int) -> None:
        emit = functools.partial(self._emit, i)
        tokens = self.token_lists[i]
        handle = self.engine.submit(tokens, self.opts, emit, background=self.background)
        self.handles.append(handle)

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()


def _run_all(
    batch: _Batch, window: int, progress: Callable[[int], None] | None
) -> list[list[Chunk]]:
    """Submit the prompts, keeping at most `window` in the engine; wait for all."""
    token_lists = batch.token_lists
    nxt = min(window, len(token_lists))
    try:
        for i in range(nxt):
            batch.submit(i)
        for _ in token_lists:
            batch.done.acquire()
            if progress:
                progress(1)
            if nxt < len(token_lists):
                batch.submit(nxt)
                nxt += 1
    except BaseException:
        batch.cancel()  # a caller interrupted: free the (maybe shared) engine's slots
        raise
    return batch.chunks
