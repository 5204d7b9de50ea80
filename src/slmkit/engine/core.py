"""The continuous-batching engine over llama.cpp.

A background thread owns a multi-sequence llama.cpp context. Each step builds one batch
holding the next token of every running sequence plus as many prompt tokens of newly
admitted sequences as fit (chunked prefill), decodes it once, then samples every sequence
that produced logits with its own sampler chain. A sequence leaves the batch the moment it
finishes or its caller cancels, and a waiting one takes its slot. Admission reserves
prompt + max_tokens cache cells per sequence, so a decode never runs out of cache.

Prefix reuse: a finished sequence's slot keeps its prompt's cache cells. A new request
takes the free slot whose kept prompt shares the longest prefix with its own (a shared
system prompt, or the earlier turns of a chat) and prefills only the rest. Kept cells
count against the cache; the least recently kept are dropped when room is needed, and
each slot keeps at most `keep_prefix` tokens (every decode attends over all used cells,
so keeping generated text too would slow everyone down).
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import ContextOverflowError, SlmkitError
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Chunk, GenerationStats, TokenLogprob
from slmkit.runtime.llamacpp import LlamaCppBackend, StopMatcher, token_logprobs

Emit = Callable[[Chunk], None]


class EngineFullError(SlmkitError):
    """The waiting queue is full; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Seq:
    tokens: list[int]
    options: GenerationOptions
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)
    slot: int = -1
    n_prefilled: int = 0
    n_past: int = 0
    last: int = -1
    sampler: Any = None
    stats: GenerationStats = field(default_factory=GenerationStats)
    t0: float = 0.0
    t_first: float = 0.0
    utf8: Any = None
    stopper: StopMatcher | None = None

    @property
    def reserve(self) -> int:
        return len(self.tokens) + self.options.max_tokens


class Handle:
    """A submitted request: cancel() frees its slot at the next step."""

    def __init__(self, seq: _Seq) -> None:
        self._seq = seq

    def cancel(self) -> None:
        self._seq.cancelled.set()


class Engine:
    """Serve many generations on one loaded llama.cpp model.

    n_seq: sequences decoded together; n_ctx: cache cells shared by all of them;
    max_waiting: queued requests beyond the running ones before submit() refuses.
    """

    def __init__(
        self,
        backend: LlamaCppBackend,
        *,
        n_seq: int = 16,
        n_ctx: int = 8192,
        n_batch: int = 512,
        max_waiting: int = 64,
        keep_prefix: int = 1024,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        lc = backend._lc
        self.on_step = on_step
        self.lc, self.backend = lc, backend
        self.ctx = backend.new_context(n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch)
        self.mem = lc.llama_get_memory(self.ctx)
        self.vocab = backend._vocab
        self.n_seq, self.n_ctx, self.n_batch = n_seq, n_ctx, n_batch
        self.max_waiting = max_waiting
        self.batch = lc.llama_batch_init(n_batch, 0, 1)
        self.piece = ctypes.create_string_buffer(256)
        self._waiting: collections.deque[_Seq] = collections.deque()
        self._running: list[_Seq] = []
        self._free = list(range(n_seq))
        self._reserved = 0
        self.keep_prefix = keep_prefix
        # Tokens whose cache cells a free slot still holds, oldest first (dict order).
        self._kept: dict[int, list[int]] = {}
        self.reused_tokens = 0
        self._cv = threading.Condition()
        self._stop = False
        self.steps = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._thread = threading.Thread(target=self._loop, name="slmkit-engine", daemon=True)
        self._thread.start()

    # --- public ---------------------------------------------------------------------------
    def submit(self, tokens: Sequence[int], options: GenerationOptions, emit: Emit) -> Handle:
        """Queue a generation; emit(chunk) is called from the engine thread for each chunk.

        Raises EngineFullError when the waiting queue is full and ContextOverflowError when
        the request could never fit the cache.
        """
        if not tokens:
            raise SlmkitError("cannot generate from an empty token list")
        seq = _Seq(list(tokens), options, emit)
        if seq.reserve > self.n_ctx:
            raise ContextOverflowError(
                f"prompt {len(tokens)} + max_tokens {options.max_tokens} > engine context "
                f"{self.n_ctx}",
                prompt_tokens=len(tokens),
                n_ctx=self.n_ctx,
                max_tokens=options.max_tokens,
            )
        with self._cv:
            if self._stop:
                raise SlmkitError("the engine is closed (its model was unloaded); retry")
            if len(self._waiting) >= self.max_waiting + len(self._free):
                raise EngineFullError(f"{len(self._waiting)} requests already waiting")
            seq.t0 = time.perf_counter()
            self._waiting.append(seq)
            self._cv.notify()
        return Handle(seq)

    def generate(
        self, tokens: Sequence[int], options: GenerationOptions, timeout: float | None = None
    ) -> list[Chunk]:
        """Blocking helper: all chunks of one generation (TimeoutError, and the request
        cancelled, if it has not finished within `timeout` seconds)."""
        done = threading.Event()
        chunks: list[Chunk] = []

        def emit(c: Chunk) -> None:
            chunks.append(c)
            if c.finish_reason is not None:
                done.set()

        handle = self.submit(tokens, options, emit)
        if not done.wait(timeout):
            handle.cancel()
            raise TimeoutError(f"generation did not finish within {timeout} s")
        return chunks

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=30)
        if self.ctx:
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.ctx = None

    # --- engine thread ----------------------------------------------------------------------
    def _admit(self) -> None:
        while self._waiting and self._free:
            seq = self._waiting[0]
            if seq.cancelled.is_set():
                self._waiting.popleft()
                self._finish(seq, "cancelled", admitted=False)
                continue
            slot, common = self._best_slot(seq.tokens)
            if not self._make_room(seq.reserve, slot):
                break  # wait for running sequences to free cache cells
            self._waiting.popleft()
            self._free.remove(slot)
            kept = self._kept.pop(slot, [])
            if len(kept) > common:
                self.lc.llama_memory_seq_rm(self.mem, slot, common, -1)
            seq.slot = slot
            seq.n_prefilled = seq.n_past = common
            self.reused_tokens += common
            self._reserved += seq.reserve
            seq.sampler = self.backend._make_sampler(seq.options)
            seq.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
            seq.stopper = StopMatcher(seq.options.stop)
            seq.stats.prompt_tokens = len(seq.tokens)
            self._running.append(seq)

    def _best_slot(self, tokens: list[int]) -> tuple[int, int]:
        """The free slot keeping the longest prefix of `tokens` (at most all but the last
        token, which must be decoded for logits), else the one keeping the least."""
        best, best_len = -1, -1
        for slot in self._free:
            kept = self._kept.get(slot, ())
            n = 0
            limit = min(len(kept), len(tokens) - 1)
            while n < limit and kept[n] == tokens[n]:
                n += 1
            if n > best_len or (n == best_len and len(kept) < len(self._kept.get(best, ()))):
                best, best_len = slot, n
        return best, max(best_len, 0)

    def _make_room(self, need: int, slot: int) -> bool:
        """Drop other free slots' kept prefixes, oldest first, until `need` cells fit."""

        def used() -> int:
            return self._reserved + sum(len(v) for k, v in self._kept.items() if k != slot)

        for other in [k for k in self._kept if k != slot]:
            if used() + need <= self.n_ctx:
                break
            self.lc.llama_memory_seq_rm(self.mem, other, -1, -1)
            del self._kept[other]
        return used() + need <= self.n_ctx

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._waiting and not self._running:
                    self._cv.wait()
                if self._stop:
                    for seq in [*self._running, *self._waiting]:
                        self._finish(seq, "cancelled", admitted=seq.slot >= 0)
                    return
                self._admit()
            try:
                self._step()
            except Exception:  # a failed decode fails its requests, not the server
                logging.getLogger("slmkit.engine").exception("engine step failed")
                for seq in list(self._running):
                    self._finish(seq, "error")

    def _step(self) -> None:
        for seq in [s for s in self._running if s.cancelled.is_set()]:
            self._finish(seq, "cancelled")
        if not self._running:
            return
        n = 0
        outputs: list[tuple[_Seq, int]] = []
        for seq in self._running:  # one next token for every sequence past its prompt
            if seq.n_prefilled == len(seq.tokens) and seq.last >= 0:
                n = self._put(n, seq.last, seq.n_past, seq.slot, True)
                outputs.append((seq, n - 1))
                seq.n_past += 1
        self._decode(self._prefill(n, outputs), outputs)

    def _prefill(self, n: int, outputs: list[tuple[_Seq, int]]) -> int:
        """Chunked prefill: add waiting prompt tokens to the batch in the room after its
        first n tokens; returns the new batch length."""
        for seq in self._running:
            if seq.n_prefilled < len(seq.tokens) and n < self.n_batch:
                take = min(self.n_batch - n, len(seq.tokens) - seq.n_prefilled)
                for j in range(take):
                    idx = seq.n_prefilled + j
                    last = idx == len(seq.tokens) - 1
                    n = self._put(n, seq.tokens[idx], idx, seq.slot, last)
                    if last:
                        outputs.append((seq, n - 1))
                seq.n_prefilled += take
                seq.n_past = seq.n_prefilled
        return n

    def _decode(self, n: int, outputs: list[tuple[_Seq, int]]) -> None:
        """Decode the batch's first n tokens, then sample each sequence that has logits."""
        self.batch.n_tokens = n
        rc = self.lc.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise SlmkitError(f"llama_decode failed in the engine (code {rc})")
        self.steps += 1
        self.batch_sizes[len(outputs)] += 1
        if self.on_step is not None:
            self.on_step(len(outputs))
        for seq, idx in outputs:
            self._sample(seq, idx)

    def _put(self, n: int, tok: int, pos: int, slot: int, logits: bool) -> int:
        b = self.batch
        b.token[n] = tok
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = slot
        b.logits[n] = logits
        return n + 1

    def _logprobs(self, idx: int, tok: int, k: int) -> tuple[TokenLogprob, ...]:
        import numpy as np

        ptr = self.lc.llama_get_logits_ith(self.ctx, idx)
        row = np.ctypeslib.as_array(ptr, shape=(self.backend._n_vocab,))
        return token_logprobs(row, tok, k, self._piece_text)

    def _piece_text(self, tok: int) -> str:
        k = self.lc.llama_token_to_piece(self.vocab, tok, self.piece, 256, 0, False)
        return self.piece.raw[: max(k, 0)].decode("utf-8", errors="replace")

    def _sample(self, seq: _Seq, idx: int) -> None:
        lc = self.lc
        tok = lc.llama_sampler_sample(seq.sampler, self.ctx, idx)
        k_lp = seq.options.logprobs
        lps = self._logprobs(idx, tok, k_lp) if k_lp is not None else ()
        now = time.perf_counter()
        if seq.t_first == 0.0:
            seq.t_first = now
            seq.stats.ttft_s = now - seq.t0
        if lc.llama_vocab_is_eog(self.vocab, tok):
            self._finish(seq, "stop")
            return
        seq.stats.completion_tokens += 1
        k = lc.llama_token_to_piece(self.vocab, tok, self.piece, 256, 0, False)
        assert seq.stopper is not None
        text, stopped = seq.stopper.feed(seq.utf8.decode(self.piece.raw[:k]) if k > 0 else "")
        if text or lps:
            seq.emit(Chunk(text=text, token_ids=(tok,), logprobs=lps))
        if stopped:
            self._finish(seq, "stop")
        elif seq.stats.completion_tokens >= seq.options.max_tokens:
            self._finish(seq, "length")
        else:
            seq.last = tok

    def _finish(self, seq: _Seq, reason: str, *, admitted: bool = True) -> None:
        if admitted and seq in self._running:
            self._running.remove(seq)
            keep = min(seq.n_prefilled, self.keep_prefix) if reason != "error" else 0
            self.lc.llama_memory_seq_rm(self.mem, seq.slot, keep, -1)
            if keep:
                self._kept[seq.slot] = seq.tokens[:keep]
            self._free.append(seq.slot)
            self._reserved -= seq.reserve
        if seq.sampler is not None:
            self.lc.llama_sampler_free(seq.sampler)
            seq.sampler = None
        end = time.perf_counter()
        seq.stats.total_s = end - seq.t0
        seq.stats.decode_s = end - seq.t_first if seq.t_first else 0.0
        tail = ""
        if reason == "length" and seq.stopper is not None:
            tail = seq.stopper.flush() + seq.utf8.decode(b"", final=True)
        seq.emit(Chunk(text=tail, finish_reason=reason, stats=seq.stats))  # type: ignore[arg-type]
