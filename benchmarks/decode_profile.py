"""Where a single-stream decode's time goes: slmkit's Python path against llama_decode itself.

Run: .venv/bin/python benchmarks/decode_profile.py [--model smollm2-135m-instruct] [--tokens 128]

Two warm-up answers, then one greedy answer to a short chat prompt under cProfile; prints the
tokens/s, the share of the time spent inside the runner's `decode` (llama.cpp's llama_decode:
what llama-bench's tg128 measures) and the top functions by own time. What is not `decode` is
what slmkit adds per token (sampling, detokenization, cache bookkeeping, stop checks).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

import slmkit

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to read."}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    with slmkit.load(args.model, n_ctx=2048) as m:
        for _ in range(2):
            list(m.stream(PROMPT, temperature=0, max_tokens=args.tokens))
            m.backend.clear_cache()  # type: ignore[attr-defined]
        prof = cProfile.Profile()
        prof.enable()
        chunks = list(m.stream(PROMPT, temperature=0, max_tokens=args.tokens))
        prof.disable()
    st = chunks[-1].stats
    assert st is not None
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    decode = sum(
        v[2]
        for k, v in stats.stats.items()  # type: ignore[attr-defined]
        if k[0].endswith("llamacpp_runner.py") and k[2] == "decode"
    )
    print(
        f"{args.model}: {st.completion_tokens} tokens at {st.tokens_per_s:.1f} tok/s under "
        f"cProfile; {decode / total:.1%} of the profiled time inside llama_decode"
    )
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
    print(out.getvalue())


if __name__ == "__main__":
    main()
