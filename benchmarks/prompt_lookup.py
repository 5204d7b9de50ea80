"""Prompt-lookup decoding on structured extraction: the same SMS texts through
`Extractor` with and without drafts copied from the input, interleaved in one process.

    python benchmarks/prompt_lookup.py [--model qwen2.5-coder-0.5b-instruct] [--n 60] [--k 8]

Prints items/s both ways (medians of --rounds interleaved passes), their ratio, and how
many outputs are identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import slmkit
from slmkit.evaluate.runner import SMS_SCHEMA
from slmkit.tasks.data import builtin_task
from slmkit.tasks.extract import Extractor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    texts, _ = builtin_task("sms_spam").load("test", args.n)  # type: ignore[union-attr]
    model = slmkit.load(args.model)
    plain, fast = Extractor(model, SMS_SCHEMA), Extractor(model, SMS_SCHEMA, prompt_lookup=args.k)
    rates: dict[str, list[float]] = {"plain": [], "lookup": []}
    outs: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, ex in (("plain", plain), ("lookup", fast)):
            t0, got = time.perf_counter(), []
            for t in texts:
                res = ex(t)
                got.append(json.dumps(res.data, sort_keys=True))
            rates[name].append(len(texts) / (time.perf_counter() - t0))
            outs[name] = got
    p, f = statistics.median(rates["plain"]), statistics.median(rates["lookup"])
    same = sum(a == b for a, b in zip(outs["plain"], outs["lookup"], strict=True))
    print(f"{args.model}, {len(texts)} SMS texts, k={args.k}, {args.rounds} interleaved rounds")
    print(f"plain {p:.2f} items/s, prompt lookup {f:.2f} items/s: ratio {f / p:.3f}")
    print(f"identical outputs {same}/{len(texts)}")


if __name__ == "__main__":
    main()
