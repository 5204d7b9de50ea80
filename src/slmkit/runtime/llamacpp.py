"""llama.cpp backend over llama-cpp-python.

Loading, tokenizing and embedding use llama-cpp-python's `Llama` object. The token loop
is written against llama.cpp's C API directly (one decode, one C-side sampler call and one
piece lookup per token): the high-level streaming API spends ~11% of decode time in Python
on this hardware, which is the margin this backend exists to win back.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.catalog.entries import ModelEntry
from slmkit.errors import ModelFormatError, SlmkitError
from slmkit.options import GenerationOptions
from slmkit.runtime.base import (
    Backend,
    Chunk,
    GenerationStats,
    LogLikelihood,
    TokenLogprob,
)

_PIECE_BUF = 256


def _quiet_llama_logs(lc: Any) -> None:
    """Silence llama.cpp's stderr chatter (load banners); errors surface as exceptions."""

    @lc.llama_log_callback
    def _noop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    lc.llama_log_set(_noop, ctypes.c_void_p(0))
    _quiet_llama_logs.keep = _noop  # type: ignore[attr-defined]  # keep callback alive


def token_logprobs(logits: np.ndarray, tok: int, k: int, text: Any) -> tuple[TokenLogprob, ...]:
    """The chosen token's log-probability and the k most likely tokens, from raw logits
    (before sampler filtering). `text(token_id)` renders a token."""
    row = logits.astype(np.float64)
    mx = row.max()
    lp = row - (mx + np.log(np.exp(row - mx).sum()))
    top = np.argpartition(-lp, k)[:k] if k else np.array([], dtype=int)
    top = top[np.argsort(-lp[top])]
    alts = tuple((text(int(t)), float(lp[t])) for t in top)
    return (TokenLogprob(text(tok), float(lp[tok]), alts),)


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
        out, self.pending = self.pending, ""
        return out


class LlamaCppBackend(Backend):
    """A GGUF model loaded in llama.cpp, with a KV cache that reuses the common prompt prefix."""

    name = "llamacpp"

    def __init__(self, llm: Any, entry: ModelEntry, path: Path) -> None:
        import llama_cpp as lc

        self._lc = lc
        self._llm = llm
        self.entry = entry
        self.path = path
        self._ctx = llm.ctx
        self._vocab = lc.llama_model_get_vocab(llm.model)
        self._mem = lc.llama_get_memory(self._ctx)
        self._n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self._n_batch = int(llm.n_batch)
        self._cached: list[int] = []  # tokens whose K/V are in sequence 0 of the cache
        self._tok = (lc.llama_token * 1)()
        self._piece = ctypes.create_string_buffer(_PIECE_BUF)
        self._embedder: Any = None
        self._scorer: Any = None

    @classmethod
    def load(cls, path: Path, entry: ModelEntry, *, n_ctx: int, n_threads: int) -> Backend:
        import llama_cpp as lc

        from slmkit.catalog.gguf_info import check_magic

        check_magic(path)
        _quiet_llama_logs(lc)
        try:
            llm = lc.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelFormatError(
                f"llama.cpp could not load {path.name}: the file is damaged, truncated or of "
                f"an unsupported architecture ({e})"
            ) from e
        return cls(llm, entry, path)

    # --- metadata -------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return int(self._llm.n_ctx())

    def chat_template(self) -> str | None:
        tpl = self._llm.metadata.get("tokenizer.chat_template")
        return str(tpl) if tpl else None

    def special_tokens(self) -> tuple[str, str]:
        def text(tok: int) -> str:
            return self._lc.llama_vocab_get_text(self._vocab, tok).decode() if tok >= 0 else ""

        return text(self._llm.token_bos()), text(self._llm.token_eos())

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        toks: list[int] = self._llm.tokenize(text.encode(), add_bos=add_special, special=True)
        bos = self._llm.token_bos()
        if len(toks) >= 2 and toks[0] == bos and toks[1] == bos:  # template already had BOS
            toks = toks[1:]
        return toks

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._llm.detokenize(list(tokens))).decode("utf-8", errors="replace")

    # --- KV cache ---------------------------------------------------------------------------
    def _prefill(self, tokens: Sequence[int], logits_from: int | None = None) -> int:
        """Make the cache hold `tokens`, reusing the common prefix; return reused count.

        The last token is always (re)decoded so that its logits are fresh.
        """
        lc = self._lc
        n_keep = 0
        limit = min(len(self._cached), len(tokens) - 1)
        while n_keep < limit and self._cached[n_keep] == tokens[n_keep]:
            n_keep += 1
        if not lc.llama_memory_seq_rm(self._mem, 0, n_keep, -1):
            lc.llama_memory_clear(self._mem, True)
            n_keep = 0
        self._cached = list(tokens[:n_keep])
        rest = list(tokens[n_keep:])
        for start in range(0, len(rest), self._n_batch):
            piece = rest[start : start + self._n_batch]
            arr = (lc.llama_token * len(piece))(*piece)
            rc = lc.llama_decode(self._ctx, lc.llama_batch_get_one(arr, len(piece)))
            if rc != 0:
                self._reset_cache()
                raise SlmkitError(f"llama_decode failed with code {rc} during prompt processing")
            self._cached.extend(piece)
        return n_keep

    def _reset_cache(self) -> None:
        self._lc.llama_memory_clear(self._mem, True)
        self._cached = []

    def clear_cache(self) -> None:
        """Forget the cached prompt prefix (the next call re-reads its whole prompt)."""
        self._reset_cache()

    # --- generation -------------------------------------------------------------------------
    def _make_sampler(self, o: GenerationOptions) -> Any:
        lc = self._lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        add = lc.llama_sampler_chain_add
        if o.grammar is not None:
            g = lc.llama_sampler_init_grammar(self._vocab, o.grammar.encode(), b"root")
            if not g:
                lc.llama_sampler_free(chain)
                raise SlmkitError("llama.cpp rejected the grammar (it failed to parse)")
            add(chain, g)
        if o.repeat_penalty != 1.0:
            add(chain, lc.llama_sampler_init_penalties(64, o.repeat_penalty, 0.0, 0.0))
        if o.temperature <= 0.0:
            add(chain, lc.llama_sampler_init_greedy())
            return chain
        if o.top_k > 0:
            add(chain, lc.llama_sampler_init_top_k(o.top_k))
        if o.top_p < 1.0:
            add(chain, lc.llama_sampler_init_top_p(o.top_p, 1))
        if o.min_p > 0.0:
            add(chain, lc.llama_sampler_init_min_p(o.min_p, 1))
        add(chain, lc.llama_sampler_init_temp(o.temperature))
        seed = o.seed if o.seed is not None else int.from_bytes(os.urandom(4), "little")
        add(chain, lc.llama_sampler_init_dist(seed))
        return chain

    def stream_tokens(self, tokens: Sequence[int], options: GenerationOptions) -> Iterator[Chunk]:
        """Prefill, then sample and decode one token at a time until a stop condition."""
        lc = self._lc
        if not tokens:
            raise SlmkitError("cannot generate from an empty token list")
        stats = GenerationStats(prompt_tokens=len(tokens))
        t0 = time.perf_counter()
        stats.cached_tokens = self._prefill(tokens)
        stats.prompt_s = time.perf_counter() - t0
        sampler = self._make_sampler(options)
        ctx, vocab, tok, piece = self._ctx, self._vocab, self._tok, self._piece
        sample, decode, is_eog = lc.llama_sampler_sample, lc.llama_decode, lc.llama_vocab_is_eog
        to_piece, get_one = lc.llama_token_to_piece, lc.llama_batch_get_one
        batch = get_one(tok, 1)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stopper = StopMatcher(options.stop)
        room = self.n_ctx - len(self._cached)
        budget = min(options.max_tokens, room)
        finish: str = "length"
        t_first = 0.0
        try:
            for i in range(budget):
                t = sample(sampler, ctx, -1)
                lps = (
                    token_logprobs(self._logits_row(-1), t, options.logprobs, self._piece_text)
                    if options.logprobs is not None
                    else ()
                )
                if i == 0:
                    t_first = time.perf_counter()
                    stats.ttft_s = t_first - t0
                if is_eog(vocab, t):
                    finish = "stop"
                    break
                stats.completion_tokens += 1
                n = to_piece(vocab, t, piece, _PIECE_BUF, 0, False)
                text, stopped = stopper.feed(utf8.decode(piece.raw[:n]) if n > 0 else "")
                if text or stopped or lps:
                    yield Chunk(text=text, token_ids=(t,), logprobs=lps)
                if stopped:
                    finish = "stop"
                    break
                if i + 1 == budget:
                    break
                tok[0] = t
                if decode(ctx, batch) != 0:
                    self._reset_cache()
                    raise SlmkitError("llama_decode failed during generation")
                self._cached.append(t)
            else:
                finish = "length"
        finally:
            lc.llama_sampler_free(sampler)
        t_end = time.perf_counter()
        stats.decode_s = t_end - t_first if t_first else 0.0
        stats.total_s = t_end - t0
        tail = stopper.flush() if finish != "stop" else ""
        tail += utf8.decode(b"", final=True)
        yield Chunk(text=tail, finish_reason=finish, stats=stats)  # type: ignore[arg-type]

    # --- scoring ----------------------------------------------------------------------------
    def loglikelihood(self, context: Sequence[int], continuation: Sequence[int]) -> LogLikelihood:
        """Decode context+continuation, reading logits only where continuation tokens are scored."""
        lc = self._lc
        if not context or not continuation:
            raise SlmkitError("loglikelihood needs a non-empty context and continuation")
        tokens = list(context) + list(continuation)
        if len(tokens) > self.n_ctx:
            raise SlmkitError(f"context+continuation is {len(tokens)} tokens > n_ctx {self.n_ctx}")
        # Reuse the cached prefix up to the first scored position.
        first_scored = len(context) - 1
        self._prefill(tokens[: first_scored + 1])
        rest = tokens[first_scored + 1 :]
        # The last prefill token's logits predict continuation[0].
        rows = [self._logits_row(-1)]
        batch = lc.llama_batch_init(self._n_batch, 0, 1)
        try:
            for start in range(0, len(rest) - 1, self._n_batch):
                piece = rest[start : min(start + self._n_batch, len(rest) - 1)]
                batch.n_tokens = len(piece)
                base = len(self._cached)
                for j, t in enumerate(piece):
                    batch.token[j] = t
                    batch.pos[j] = base + j
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = 0
                    batch.logits[j] = 1
                if lc.llama_decode(self._ctx, batch) != 0:
                    self._reset_cache()
                    raise SlmkitError("llama_decode failed while scoring")
                self._cached.extend(piece)
                rows.extend(self._logits_row(j) for j in range(len(piece)))
        finally:
            lc.llama_batch_free(batch)
        logits = np.stack(rows)
        mx = logits.max(axis=1, keepdims=True)
        logz = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
        target = np.asarray(continuation)
        lps = logits[np.arange(len(target)), target] - logz
        greedy = bool((logits.argmax(axis=1) == target).all())
        vals = tuple(float(x) for x in lps)
        return LogLikelihood(
            logprob=math.fsum(vals), n_tokens=len(vals), is_greedy=greedy, token_logprobs=vals
        )

    def loglikelihood_many(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LogLikelihood]:
        """Score many requests in shared batches (see llamacpp_scoring.py)."""
        from slmkit.runtime.llamacpp_scoring import ScoringContext

        if not requests:
            return []
        if self._scorer is None:
            self._scorer = ScoringContext(
                self, n_ctx=self.n_ctx, n_seq=min(128, self._lc.llama_max_parallel_sequences())
            )
        out: list[LogLikelihood] = self._scorer.score(requests)
        return out

    def new_context(self, *, n_ctx: int, n_seq: int, n_batch: int = 512, flash: int = -1) -> Any:
        """A further llama.cpp context over the same loaded weights, with n_seq sequences
        sharing one unified KV cache (used by batched scoring and the engine)."""
        lc = self._lc
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = self._llm.n_threads
        params.kv_unified = True
        params.no_perf = True
        params.flash_attn_type = flash
        ctx = lc.llama_init_from_model(self._llm.model, params)
        if not ctx:
            raise SlmkitError(f"llama.cpp could not create a context with {n_seq} sequences")
        return ctx

    def _piece_text(self, tok: int) -> str:
        buf = ctypes.create_string_buffer(_PIECE_BUF)
        n = self._lc.llama_token_to_piece(self._vocab, tok, buf, _PIECE_BUF, 0, False)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def _logits_row(self, i: int) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)

    # --- embeddings -------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Mean-pooled, L2-normalised embeddings from a second, embedding-mode context."""
        import llama_cpp as lc

        if self._embedder is None:
            self._embedder = lc.Llama(
                model_path=str(self.path),
                embedding=True,
                n_ctx=min(self.n_ctx, 2048),
                n_threads=self._llm.n_threads,
                pooling_type=lc.LLAMA_POOLING_TYPE_MEAN,
                verbose=False,
            )
        out: list[list[float]] = self._embedder.embed(list(texts), normalize=True)
        return out

    def perf(self) -> dict[str, float]:
        """llama.cpp's own timing counters for this context (for benchmarks)."""
        d = self._lc.llama_perf_context(self._ctx)
        return {
            "t_eval_ms": d.t_eval_ms,
            "n_eval": d.n_eval,
            "t_p_eval_ms": d.t_p_eval_ms,
            "n_p_eval": d.n_p_eval,
        }

    def reset_perf(self) -> None:
        self._lc.llama_perf_context_reset(self._ctx)

    def close(self) -> None:
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None
        for obj in (self._embedder, self._llm):
            if obj is not None:
                obj.close()
        self._embedder = None
