"""Engine chunks to the event loop, and OpenAI's server-sent events.

`StreamHub` hands chunks from the engine thread to the event loop with one wake-up for
all that arrive together (an engine step emits one chunk per running sequence), instead
of one call_soon_threadsafe per chunk: on 2 cores every syscall is taken from the decode.
One hub belongs to one app (no module-level state).

Slow readers: the engine thread never waits for a client (chunks queue on the loop), so a
client that stops reading cannot hold the batch. The hub also cancels a stream whose
reader has been stuck handing one chunk to its socket for longer than `send_timeout`
seconds while more arrive, so a stalled client does not keep decoding (and holding a slot)
until max_tokens.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from slmkit.engine import Engine
from slmkit.engine.core import Handle
from slmkit.errors import RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Chunk
from slmkit.serve.errors import sse_error
from slmkit.serve.metrics import Metrics
from slmkit.serve.responses import Shape

log = logging.getLogger("slmkit.serve")


@dataclass(eq=False)
class _Pipe:
    """One stream's queue, and since when its reader has been handing a chunk on."""

    on_stall: Callable[[], None]
    queue: asyncio.Queue[Chunk] = field(default_factory=asyncio.Queue)
    handle: Handle | None = None
    sending_since: float | None = None
    stalled: bool = False


class StreamHub:
    """Per-app relay from the engine thread to the loop the app runs on."""

    def __init__(self, send_timeout: float | None = None) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: collections.deque[tuple[_Pipe, Chunk]] = collections.deque()
        self.lock = threading.Lock()
        self.scheduled = False
        self.send_timeout = send_timeout or None

    def put(self, pipe: _Pipe, chunk: Chunk) -> None:
        self.pending.append((pipe, chunk))
        with self.lock:
            if self.scheduled:
                return
            self.scheduled = True
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self.lock:
            self.scheduled = False
        now = time.monotonic()
        while self.pending:
            pipe, chunk = self.pending.popleft()
            pipe.queue.put_nowait(chunk)
            since = pipe.sending_since
            if since is not None and self.send_timeout and now - since > self.send_timeout:
                self._stall(pipe, now - since)

    def _stall(self, pipe: _Pipe, waited: float) -> None:
        if pipe.stalled or pipe.handle is None:
            return
        pipe.stalled = True
        pipe.handle.cancel()
        pipe.on_stall()
        log.warning("a client read nothing for %.1f s: its stream was cancelled", waited)

    async def stream(
        self, engine: Engine, tokens: list[int], options: GenerationOptions, metrics: Metrics
    ) -> AsyncGenerator[Chunk, None]:
        """Submit to the engine and yield its chunks; cancels the sequence if abandoned."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        pipe = _Pipe(metrics.stalled.inc)
        put = self.put
        handle = pipe.handle = engine.submit(tokens, options, lambda c: put(pipe, c))
        metrics.tokens_in.inc(len(tokens))
        finished, first, last = False, True, time.perf_counter()
        try:
            while True:
                pipe.sending_since = None
                chunk = await pipe.queue.get()
                now = time.perf_counter()
                if chunk.text or chunk.token_ids:
                    (metrics.ttft if first else metrics.itl).observe(now - last)
                    first, last = False, now
                    metrics.tokens_out.inc(len(chunk.token_ids))
                pipe.sending_since = time.monotonic()
                yield chunk
                if chunk.finish_reason is not None:
                    finished = True
                    return
        finally:
            if not finished:
                handle.cancel()


async def first_chunk(stream: AsyncIterator[Chunk]) -> Chunk:
    return await stream.__anext__()


async def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    """Every chunk of one generation; RuntimeFailure if the engine failed it."""
    out: list[Chunk] = []
    async for c in stream:
        out.append(c)
        if c.finish_reason == "error":
            raise RuntimeFailure("generation failed in the engine")
        if c.finish_reason is not None:
            return out
    raise RuntimeFailure("generation ended early")


async def sse(
    shape: Shape, first: list[Chunk], streams: list[AsyncGenerator[Chunk, None]]
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `data: [DONE]`."""
    finals: list[Chunk] = []
    for i, head in enumerate(first):
        yield _event(shape, i, head, role=True)
        if head.finish_reason is not None:
            finals.append(head)
    live = [i for i, h in enumerate(first) if h.finish_reason is None]
    relay = _direct(streams[0]) if live == [0] else _merged(streams, live)
    try:
        async for i, chunk in relay:
            if chunk.finish_reason is not None:
                finals.append(chunk)
            yield _event(shape, i, chunk)
    finally:
        await (
            relay.aclose()
        )  # at once, not at garbage collection: a client that left frees its slot
    for line in _tail(shape, finals):
        yield line


def _event(shape: Shape, i: int, c: Chunk, role: bool = False) -> str:
    if c.finish_reason == "error":
        return sse_error("generation failed in the engine")
    return shape.event(i, c, role)


def _tail(shape: Shape, finals: list[Chunk]) -> Iterator[str]:
    usage = shape.usage_event(finals)
    if usage is not None:
        yield usage
    yield "data: [DONE]\n\n"


async def _direct(stream: AsyncGenerator[Chunk, None]) -> AsyncGenerator[tuple[int, Chunk], None]:
    """The usual case, one choice: read its stream directly, no relay task."""
    try:
        async for c in stream:
            yield 0, c
    finally:
        await stream.aclose()  # cancels the engine sequence if the client left


async def _merged(
    streams: list[AsyncGenerator[Chunk, None]], live: list[int]
) -> AsyncGenerator[tuple[int, Chunk], None]:
    """n > 1 choices: one pump task per stream into one queue, in arrival order."""
    queue: asyncio.Queue[tuple[int, Chunk | None]] = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            async for c in streams[i]:
                await queue.put((i, c))
        finally:
            await queue.put((i, None))

    tasks = [asyncio.create_task(pump(i)) for i in live]
    try:
        pending = len(tasks)
        while pending:
            i, got = await queue.get()
            if got is None:
                pending -= 1
            else:
                yield i, got
    finally:
        for t in tasks:
            t.cancel()  # a pump's cancellation cancels its engine sequence
        await asyncio.gather(*tasks, return_exceptions=True)
