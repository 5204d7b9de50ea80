"""Flash attention on and off in a one-sequence llama.cpp context, interleaved in one process.

    python benchmarks/flash_attention.py [--models smollm2-135m-instruct ...] [--rounds 3]

Per model: an 800-token prompt prefilled, then 40 one-token decodes, with flash attention
off (0) and on (1), medians of --rounds interleaved rounds; prints tokens/s both ways and
the ratio (slmkit's single stream runs with it on: runtime/llamacpp.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import slmkit
from slmkit.runtime.cache import PromptCache


def one(model: slmkit.Model, flash: int, toks: list[int]) -> tuple[float, float]:
    runner = model.backend.batch_runner(n_ctx=2048, n_seq=1, flash=flash)  # type: ignore[call-arg]
    cache = PromptCache(runner)
    t0 = time.perf_counter()
    cache.prefill(toks)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in toks[:40]:
        cache.extend((t,))
    decode = time.perf_counter() - t0
    runner.close()
    return len(toks) / prefill, 40 / decode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for mid in args.models:
        model = slmkit.load(mid, n_ctx=2048)
        toks = model.backend.tokenize("The meeting discussed the budget. " * 150)[:800]
        got: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
        for _ in range(args.rounds):
            for flash in (0, 1):
                got[flash].append(one(model, flash, toks))
        med = {f: [statistics.median(r[i] for r in v) for i in (0, 1)] for f, v in got.items()}
        off, on = med[0], med[1]
        print(
            f"{mid}: prefill {off[0]:.0f} -> {on[0]:.0f} tok/s ({on[0] / off[0]:.2f}x), "
            f"decode {off[1]:.1f} -> {on[1]:.1f} tok/s ({on[1] / off[1]:.2f}x)"
        )
        model.close()


if __name__ == "__main__":
    main()
