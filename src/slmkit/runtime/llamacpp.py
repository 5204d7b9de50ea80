"""llama.cpp backend over llama-cpp-python.

Loading, tokenizing and embedding use llama-cpp-python's `Llama` object. Generation and
scoring run on `LlamaRunner` (llamacpp_runner.py), llama.cpp's C API behind the
`BatchRunner` interface, through the shared loops of runtime/generate.py and
runtime/scoring.py.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from slmkit.catalog.entries import ModelEntry
from slmkit.errors import ModelFormatError, RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime import generate
from slmkit.runtime.base import Backend, BatchRunner, Chunk, LogLikelihood, TokenLogprob
from slmkit.runtime.llamacpp_runner import LlamaRunner
from slmkit.runtime.speculate import CostModel, DraftModel, make_draft

FLASH: dict[object, int] = {True: 1, False: 0}  # llama.cpp's flash_attn_type for a measured choice


def require_working_build() -> None:
    """Refuse to run llama.cpp in this process when its build fails the probe on this CPU
    (slmkit.runtime.native): one clear error instead of a process killed by SIGILL."""
    from slmkit.runtime import native

    result = native.verified_build()
    if not result.ok:
        raise RuntimeFailure(native.failure_line(result))


def quiet_llama_logs(lc: Any) -> None:
    """Silence llama.cpp's stderr chatter (load banners); errors surface as exceptions."""

    @lc.llama_log_callback
    def _noop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    lc.llama_log_set(_noop, ctypes.c_void_p(0))
    quiet_llama_logs.keep = _noop  # type: ignore[attr-defined]  # keep callback alive


class LlamaCppBackend(Backend):
    """A GGUF model loaded in llama.cpp, with a KV cache that reuses the common prompt prefix."""

    name = "llamacpp"

    def __init__(self, llm: Any, entry: ModelEntry, path: Path) -> None:
        import llama_cpp as lc

        self._lc = lc
        self._llm = llm
        self.entry = entry
        self.path = path
        self._vocab = lc.llama_model_get_vocab(llm.model)
        self.runner = LlamaRunner(
            llm.model,
            llm.ctx,
            n_ctx=int(llm.n_ctx()),
            n_seq=1,
            n_batch=int(llm.n_batch),
            owns=False,
        )
        self._cache = generate.PromptCache(self.runner)
        self._embedder: Any = None
        self._scorer: Any = None
        self._draft: DraftModel | None = None
        self.costs = CostModel()  # what decoding costs here: speculation's draft length
        for n, seconds in entry.runtime.get("row_seconds", {}).items():
            self.costs.note_rows(int(n), float(seconds))  # measured by slm optimize

    @classmethod
    def load(cls, path: Path, entry: ModelEntry, *, n_ctx: int, n_threads: int) -> Backend:
        import llama_cpp as lc

        from slmkit.catalog.gguf_info import check_magic

        check_magic(path)
        require_working_build()
        quiet_llama_logs(lc)
        try:
            llm = lc.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                # on unless `slm optimize` measured it slower for this file on this CPU (SmolLM2
                # prefill 1.10x with it; Qwen2.5-Coder-0.5B 0.84x: docs/benchmarks.md); with it,
                # small batches round as single decodes do (exact speculative verification)
                flash_attn=bool(entry.runtime.get("flash_attn", True)),
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

    @property
    def n_threads(self) -> int:
        """Threads llama.cpp decodes with."""
        return int(self._llm.n_threads)

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

    def clear_cache(self) -> None:
        """Forget the cached prompt prefix (the next call re-reads its whole prompt)."""
        self._cache.reset()

    # --- generation and scoring -------------------------------------------------------------
    def stream_tokens(self, tokens: Sequence[int], options: GenerationOptions) -> Iterator[Chunk]:
        """Prefill (reusing the cached prefix), then sample one token at a time."""
        return generate.stream(self._cache, tokens, options, self._draft, self.costs)

    def attach_draft(self, draft: Backend | None) -> None:
        """Draft with `draft` (its own one-sequence context over its weights, as long as ours)."""
        if self._draft is not None:
            self._draft.cache.runner.close()
            self._draft = None
        if draft is None:
            return
        self._draft = make_draft(self.runner, draft, self.n_ctx)

    def loglikelihood(self, context: Sequence[int], continuation: Sequence[int]) -> LogLikelihood:
        """Decode context+continuation, keeping logits only where continuation is scored."""
        return generate.loglikelihood(self._cache, context, continuation)

    def prompt_logprobs(self, tokens: Sequence[int], k: int) -> list[TokenLogprob]:
        return generate.prompt_logprobs(self._cache, tokens, k)

    def loglikelihood_many(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[LogLikelihood]:
        """Score many requests in shared batches on a multi-sequence context (scoring.py)."""
        from slmkit.runtime.scoring import ScoringContext

        if not requests:
            return []
        if self._scorer is None:
            n_seq = min(128, self._lc.llama_max_parallel_sequences())
            self._scorer = ScoringContext(self.batch_runner(n_ctx=self.n_ctx, n_seq=n_seq))
        out: list[LogLikelihood] = self._scorer.score(requests)
        return out

    def batch_runner(
        self,
        *,
        n_ctx: int,
        n_seq: int,
        n_batch: int = 512,
        flash: int | None = None,
        per_seq: bool = False,
    ) -> BatchRunner:
        """A further llama.cpp context over the same loaded weights, with n_seq sequences
        sharing one unified KV cache, or each its own cells with `per_seq` (used by batched
        scoring and the engine)."""
        return LlamaRunner.new_context(
            self._llm.model,
            n_ctx=n_ctx,
            n_seq=n_seq,
            n_batch=n_batch,
            n_threads=self._llm.n_threads,
            # llama.cpp's own choice (-1) unless `slm optimize` measured one for this file
            flash=flash
            if flash is not None
            else FLASH.get(self.entry.runtime.get("flash_attn"), -1),
            per_seq=per_seq,
        )

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
        d = self._lc.llama_perf_context(self._llm.ctx)
        return {
            "t_eval_ms": d.t_eval_ms,
            "n_eval": d.n_eval,
            "t_p_eval_ms": d.t_p_eval_ms,
            "n_p_eval": d.n_p_eval,
        }

    def reset_perf(self) -> None:
        self._lc.llama_perf_context_reset(self._llm.ctx)

    def close(self) -> None:
        self.attach_draft(None)
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None
        self.runner.close()
        for obj in (self._embedder, self._llm):
            if obj is not None:
                obj.close()
        self._embedder = None
