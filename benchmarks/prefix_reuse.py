"""Prefix reuse in the engine: time to first token for requests that share a long system
prompt, with the engine keeping finished prompts' cache cells (the default) and without.

Run: .venv/bin/python benchmarks/prefix_reuse.py [--requests 16] [--system-words 300]
Requests go one after another (so each can reuse the previous one's prefix), greedy,
16 tokens each; the two engines take turns per request so both see the same machine load.
"""

from __future__ import annotations

import argparse
import statistics

import slmkit
from slmkit.engine import Engine
from slmkit.options import make_options

QUESTIONS = [
    "What is the capital of France?",
    "Name a large ocean.",
    "What colour is the sky?",
    "How many legs has a spider?",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--system-words", type=int, default=300)
    args = ap.parse_args()
    model = slmkit.load(args.model, n_ctx=4096)
    rules = " ".join(f"Rule {i}: be polite and precise." for i in range(args.system_words // 6))
    engines = {
        "keep prefixes": Engine(model.backend, n_seq=4, n_ctx=4096),
        "no reuse": Engine(model.backend, n_seq=4, n_ctx=4096, keep_prefix=0),
    }
    opts = make_options(temperature=0, max_tokens=16)
    ttft: dict[str, list[float]] = {k: [] for k in engines}
    try:
        n_prompt = 0
        for i in range(args.requests):
            msgs = [
                {"role": "system", "content": rules},
                {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]},
            ]
            tokens = model.backend.tokenize(model.format_chat(msgs))
            n_prompt = len(tokens)
            for name, engine in engines.items():
                final = engine.generate(tokens, opts, timeout=120)[-1]
                assert final.stats is not None
                ttft[name].append(final.stats.ttft_s)
        print(f"model {args.model}, prompt {n_prompt} tokens, {args.requests} requests")
        for name, engine in engines.items():
            print(
                f"{name:>14}: TTFT median {statistics.median(ttft[name]) * 1000:.0f} ms, "
                f"prompt tokens reused {engine.reused_tokens}"
            )
        ratio = statistics.median(ttft["no reuse"]) / statistics.median(ttft["keep prefixes"])
        print(f"TTFT without reuse / with reuse: {ratio:.1f}x")
    finally:
        for engine in engines.values():
            engine.close()
        model.close()


if __name__ == "__main__":
    main()
