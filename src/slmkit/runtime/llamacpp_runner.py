"""`LlamaRunner`: llama.cpp's C API behind the `BatchRunner` interface.

Batch filling, sampler chains, token pieces, logits and cache edits live here and nowhere
else; the token loops above it (runtime/generate.py, engine/core.py, runtime/scoring.py)
make one Python call per llama.cpp call. Written against the C API rather than
llama-cpp-python's `Llama.create_completion`, whose per-token Python work costs a few
percent of decode speed on a small model (docs/design.md).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from slmkit.errors import RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime.base import BatchRunner, Entry

_PIECE_BUF = 256


class LlamaRunner(BatchRunner):
    """A llama.cpp context (owned, or borrowed from a `Llama` object) and one batch."""

    def __init__(self, model: Any, ctx: Any, *, n_ctx: int, n_seq: int, n_batch: int, owns: bool):
        import llama_cpp as lc

        self.lc, self.ctx, self.owns = lc, ctx, owns
        self.vocab = lc.llama_model_get_vocab(model)
        self.mem = lc.llama_get_memory(ctx)
        self.n_ctx, self.n_seq, self.n_batch = n_ctx, n_seq, n_batch
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.batch = lc.llama_batch_init(n_batch, 0, n_seq)
        self._buf = ctypes.create_string_buffer(_PIECE_BUF)
        self._sample = lc.llama_sampler_sample
        self._eog = lc.llama_vocab_is_eog
        self._to_piece = lc.llama_token_to_piece

    @classmethod
    def new_context(
        cls,
        model: Any,
        *,
        n_ctx: int,
        n_seq: int,
        n_batch: int,
        n_threads: int,
        flash: int = -1,
        per_seq: bool = False,
    ) -> LlamaRunner:
        """A further context over loaded weights. Its n_seq sequences share one unified KV
        cache, or with `per_seq` each has its own n_ctx // n_seq cells (llama.cpp's
        per-sequence streams): a decode row then attends over its own sequence's cells only,
        not over every cell in use, which made 16 short streams 1.2x faster (docs/serve.md)."""
        import llama_cpp as lc

        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = not per_seq
        params.no_perf = True
        params.flash_attn_type = flash
        ctx = lc.llama_init_from_model(model, params)
        if not ctx:
            raise RuntimeFailure(f"llama.cpp could not create a context with {n_seq} sequences")
        runner = cls(model, ctx, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, owns=True)
        runner.per_seq = per_seq
        return runner

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, entries: Sequence[Entry]) -> None:
        b = self.batch
        token, pos, n_seq_id, seq_id, logits = b.token, b.pos, b.n_seq_id, b.seq_id, b.logits
        for j, (tok, p, seqs, want) in enumerate(entries):
            token[j] = tok
            pos[j] = p
            n_seq_id[j] = len(seqs)
            row = seq_id[j]
            for k, s in enumerate(seqs):
                row[k] = s
            logits[j] = want
        b.n_tokens = len(entries)
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeFailure(f"llama_decode failed (code {rc})")

    def logits(self, idx: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.ctx, idx)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def logit_rows(self, n: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n, self.n_vocab))

    # --- sampling and token text --------------------------------------------------------------
    def new_sampler(self, options: GenerationOptions) -> Any:
        """A C sampler chain: grammar, penalties, then greedy or top-k/top-p/min-p/temp/dist."""
        lc, o = self.lc, options
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        add = lc.llama_sampler_chain_add
        if o.grammar is not None:
            g = lc.llama_sampler_init_grammar(self.vocab, o.grammar.encode(), b"root")
            if not g:
                lc.llama_sampler_free(chain)
                raise RuntimeFailure("llama.cpp rejected the grammar (it failed to parse)")
            add(chain, g)
        if o.repeat_penalty != 1.0:
            # this llama.cpp takes n_vocab first (llama.h of llama-cpp-python 0.3.36)
            add(
                chain, lc.llama_sampler_init_penalties(self.n_vocab, 64, o.repeat_penalty, 0.0, 0.0)
            )
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

    def free_sampler(self, sampler: Any) -> None:
        self.lc.llama_sampler_free(sampler)

    def sample(self, sampler: Any, idx: int) -> int:
        return int(self._sample(sampler, self.ctx, idx))

    def piece(self, tok: int) -> bytes:
        n = self._to_piece(self.vocab, tok, self._buf, _PIECE_BUF, 0, False)
        return self._buf.raw[:n] if n > 0 else b""

    def is_eog(self, tok: int) -> bool:
        return bool(self._eog(self.vocab, tok))

    # --- cache ------------------------------------------------------------------------------
    def forget(self, seq: int, start: int = 0) -> bool:
        return bool(self.lc.llama_memory_seq_rm(self.mem, seq, start, -1))

    def copy_seq(self, src: int, dst: int) -> None:
        self.lc.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.mem, True)

    def close(self) -> None:
        if self.batch is not None:
            self.lc.llama_batch_free(self.batch)
            self.batch = None
        if self.owns and self.ctx:
            self.lc.llama_free(self.ctx)
        self.ctx = None
