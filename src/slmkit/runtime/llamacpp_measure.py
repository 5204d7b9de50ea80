"""What a GGUF file costs on this CPU and how far its next-token distribution drifts from a
reference file's: prefill and decode tokens/s, the time of one batch of n rows, and the KL
divergence of the next-token distribution, through llama-cpp-python.

Why by hand: llama.cpp's own `llama-perplexity --kl-divergence` and `llama-bench` are C++
tools that the llama-cpp-python wheel does not ship. These are the same measurements over the
same llama.cpp calls, in-process, so `slm optimize` can make them on any machine slmkit installs
on, against files it has just written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def open_gguf(
    path: Path,
    *,
    n_ctx: int,
    n_threads: int,
    flash_attn: bool = True,
    logits_all: bool = False,
    n_batch: int = 512,
) -> Any:
    """A llama.cpp model + context for measuring (the probe's verdict is checked first)."""
    import llama_cpp as lc

    from slmkit.runtime.llamacpp import quiet_llama_logs, require_working_build

    require_working_build()
    quiet_llama_logs(lc)
    return lc.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=n_batch,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        flash_attn=flash_attn,
        logits_all=logits_all,
        verbose=False,
    )


def tokenize_file(path: Path, text: str) -> list[int]:
    """`text` in the model's own tokens (vocabulary only: no weights are loaded)."""
    import llama_cpp as lc

    from slmkit.runtime.llamacpp import quiet_llama_logs

    quiet_llama_logs(lc)
    vocab = lc.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return list(vocab.tokenize(text.encode(), add_bos=False, special=False))
    finally:
        vocab.close()


def prefill_decode(llm: Any, prompt: Sequence[int], n_decode: int) -> tuple[float, float]:
    """Tokens/s of prefilling `prompt` on an empty cache, then of `n_decode` single-token
    decodes after it (at a depth of len(prompt)); fed tokens, not sampled ones: the same work."""
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(list(prompt))
    t1 = time.perf_counter()
    for tok in prompt[:n_decode]:
        llm.eval([tok])
    t2 = time.perf_counter()
    return len(prompt) / (t1 - t0), n_decode / (t2 - t1)


def row_seconds(
    llm: Any, tokens: Sequence[int], rows: Iterable[int], *, depth: int, repeats: int = 3
) -> dict[int, float]:
    """Median seconds of one decode call of n rows after a kept prefix of `depth` tokens, for
    each n in `rows`: what a verification or scoring batch of that shape costs here."""
    llm.reset()
    llm.eval(list(tokens[:depth]))
    shapes = list(rows)

    def once(n: int) -> float:
        llm.n_tokens = depth  # eval() drops every cached cell past n_tokens first
        t0 = time.perf_counter()
        llm.eval(list(tokens[depth : depth + n]))
        return time.perf_counter() - t0

    for n in shapes:  # untimed: the first call of a new shape builds and allocates its graph
        once(n)
    runs: dict[int, list[float]] = {n: [] for n in shapes}
    for _ in range(repeats):  # rounds over every shape, so a burst of load hits all of them
        for n in shapes:
            runs[n].append(once(n))
    return {n: float(np.median(r)) for n, r in runs.items()}


def log_softmax(x: np.ndarray) -> np.ndarray:
    y = x - x.max(axis=-1, keepdims=True)
    out: np.ndarray = y - np.log(np.exp(y).sum(axis=-1, keepdims=True))
    return out


@dataclass
class Drift:
    """Per-token KL(reference || candidate) and top-1 agreement, accumulated over windows."""

    kld: list[np.ndarray] = field(default_factory=list)
    same_top1: int = 0
    tokens: int = 0

    def add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        self.kld.append((np.exp(ref) * (ref - cand)).sum(axis=-1))
        self.same_top1 += int((ref.argmax(-1) == cand.argmax(-1)).sum())
        self.tokens += ref.shape[0]

    def summary(self) -> dict[str, float]:
        kld = np.concatenate(self.kld) if self.kld else np.zeros(1)
        return {
            "kld_mean": round(float(kld.mean()), 5),
            "kld_p99": round(float(np.percentile(kld, 99)), 4),
            "top1_agreement": round(self.same_top1 / max(1, self.tokens), 4),
            "tokens": self.tokens,
        }


def drift(
    reference: Any,
    candidates: dict[str, Any],
    windows: Sequence[Sequence[int]],
    *,
    skip: int,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, dict[str, float]]:
    """Each candidate's next-token distributions against the reference's, over `windows`
    (each evaluated from an empty cache; positions before `skip` are context only, as in
    llama-perplexity). The models are open side by side, so each window's reference
    distribution is computed once and never stored whole."""
    found = {name: Drift() for name in candidates}
    for window in windows:
        rows = slice(skip, len(window) - 1)  # logits at i predict token i+1
        reference.reset()
        reference.eval(list(window))
        ref = log_softmax(np.asarray(reference.scores[rows], dtype=np.float32))
        for name, llm in candidates.items():
            llm.reset()
            llm.eval(list(window))
            found[name].add(ref, log_softmax(np.asarray(llm.scores[rows], dtype=np.float32)))
        progress(1)
    return {name: d.summary() for name, d in found.items()}
