"""Backend-independent token handling shared by every generation loop: token bytes to
text with UTF-8 carry, stop strings, counts and timings, finish reasons, and log-softmax.

The single-stream loop (`runtime/generate.py`) and the engine (`engine/core.py`) both feed
sampled tokens through one `SequenceOutput` each, so they cannot drift apart.
"""

from __future__ import annotations

import codecs
import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from slmkit.options import GenerationOptions
from slmkit.runtime.base import Chunk, FinishReason, GenerationStats, TokenLogprob


class StopMatcher:
    """Finds stop strings in streamed text, holding back a tail that may start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, stopped)."""
        if not self.stops:
            return text, False
        self.pending += text
        cut = min((i for s in self.stops if (i := self.pending.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        safe = len(self.pending) - self.hold
        if safe <= 0:
            return "", False
        out, self.pending = self.pending[:safe], self.pending[safe:]
        return out, False

    def flush(self) -> str:
        """Release the held-back tail (when generation ends without a stop)."""
        out, self.pending = self.pending, ""
        return out


class SequenceOutput:
    """One generation's output side: turns sampled tokens into chunks and decides when it
    is finished (end-of-generation token, stop string, max_tokens)."""

    __slots__ = ("options", "stats", "t0", "t_first", "_utf8", "_stop")

    def __init__(self, options: GenerationOptions, prompt_tokens: int) -> None:
        self.options = options
        self.stats = GenerationStats(prompt_tokens=prompt_tokens)
        self.t0 = time.perf_counter()
        self.t_first = 0.0
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = StopMatcher(options.stop)

    def prefilled(self) -> None:
        """Record the end of prompt processing."""
        self.stats.prompt_s = time.perf_counter() - self.t0

    def token(
        self, tok: int, data: bytes, eog: bool, logprobs: tuple[TokenLogprob, ...] = ()
    ) -> tuple[Chunk | None, FinishReason | None]:
        """Take one sampled token (its bytes, whether it ends generation); return the chunk
        to emit (if any) and the finish reason once the sequence is done."""
        if self.t_first == 0.0:
            self.t_first = time.perf_counter()
            self.stats.ttft_s = self.t_first - self.t0
        if eog:  # no text; legacy completions report its log-probability (OpenAI, vLLM)
            if not logprobs:
                return None, "stop"
            marked = tuple(dataclasses.replace(lp, eog=True) for lp in logprobs)
            return Chunk(text="", token_ids=(tok,), logprobs=marked), "stop"
        self.stats.completion_tokens += 1
        text, stopped = self._stop.feed(self._utf8.decode(data))
        chunk = Chunk(text=text, token_ids=(tok,), logprobs=logprobs) if text or logprobs else None
        if stopped:
            return chunk, "stop"
        if self.stats.completion_tokens >= self.options.max_tokens:
            return chunk, "length"
        return chunk, None

    def finish(self, reason: FinishReason) -> Chunk:
        """The last chunk: held-back text (unless a stop string ended it) and the stats."""
        end = time.perf_counter()
        self.stats.total_s = end - self.t0
        self.stats.decode_s = end - self.t_first if self.t_first else 0.0
        tail = ""
        if reason == "length":
            tail = self._stop.flush() + self._utf8.decode(b"", final=True)
        return Chunk(text=tail, finish_reason=reason, stats=self.stats)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (rows: positions, columns: vocabulary)."""
    x = np.atleast_2d(logits).astype(np.float64)
    mx = x.max(axis=1, keepdims=True)
    out: np.ndarray = x - (mx + np.log(np.exp(x - mx).sum(axis=1, keepdims=True)))
    return out


def rows_logprobs(
    lp: np.ndarray, targets: Sequence[int], k: int, text: Callable[[int], str]
) -> list[TokenLogprob]:
    """Per row of log-softmax `lp`: target i's log-probability and the k most likely tokens
    (echoed prompt tokens, scored the way generated ones are)."""
    out = []
    for row, tok in zip(lp, targets, strict=True):
        top = np.argpartition(-row, k)[:k] if k else np.array([], dtype=int)
        top = top[np.argsort(-row[top])]
        alts = tuple((text(int(t)), float(row[t])) for t in top)
        out.append(TokenLogprob(text(int(tok)), float(row[tok]), alts))
    return out


def top_logprobs(
    logits: np.ndarray, tok: int, k: int, text: Callable[[int], str]
) -> tuple[TokenLogprob, ...]:
    """The chosen token's log-probability and the k most likely tokens, from raw logits
    (before sampler filtering). `text(token_id)` renders a token."""
    return tuple(rows_logprobs(log_softmax(logits), [tok], k, text))
