"""`generate_many`: batch generation in Python on the continuous-batching engine."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from slmkit.model import Completion, Message, Model, join
from slmkit.options import make_options
from slmkit.runtime.base import Chunk


def generate_many(
    model: Model,
    prompts: Sequence[str | Sequence[Message]],
    *,
    n_seq: int = 16,
    system: str | None = None,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> list[Completion]:
    """Generate for every prompt (a str is completed raw, a message list is chatted), up to
    n_seq at a time in shared decode steps; results in prompt order."""
    from slmkit.engine.core import Engine

    opts = make_options(**options)
    token_lists = []
    for p in prompts:
        text = p if isinstance(p, str) else model.format_chat(p, system=system)
        tokens = model.backend.tokenize(text)
        model.fit(tokens, opts.model_copy(update={"overflow": "error"}))
        token_lists.append(tokens)
    n_ctx = max(2048, min(len(token_lists), n_seq) * model.n_ctx)
    engine = Engine(model.backend, n_seq=n_seq, n_ctx=n_ctx, max_waiting=len(token_lists))
    chunks: list[list[Chunk]] = [[] for _ in token_lists]
    done = threading.Semaphore(0)

    def sink(i: int) -> Callable[[Chunk], None]:
        def emit(c: Chunk) -> None:
            chunks[i].append(c)
            if c.finish_reason is not None:
                done.release()

        return emit

    try:
        for i, tokens in enumerate(token_lists):
            engine.submit(tokens, opts, sink(i))
        for _ in token_lists:
            done.acquire()
            if progress:
                progress(1)
    finally:
        engine.close()
    return [join(iter(c)) for c in chunks]
