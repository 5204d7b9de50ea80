"""LoRA training rows/s on SmolLM2-135M for `extract_sms`, with and without the shared
prompt prefix computed once per batch (slm finetune's causal path), in one process.

Run: .venv/bin/python benchmarks/causal_prefix.py [--data extract_sms] [--rows 64] [--rounds 2]

Both variants take the same optimizer-free steps (forward, loss, backward) over the same
batches of 8 rows in bf16 autocast; rounds interleave them and the figure is the median
rows/s. The losses of the two are printed too (they must agree).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from slmkit.catalog.store import Store
from slmkit.loading import load
from slmkit.train import use_bf16
from slmkit.train.causal import Encoded, encode_pairs, load_causal, load_pairs, loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="extract_sms")
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    store = Store()
    torch.set_num_threads(store.settings.n_threads)
    data = load_pairs(args.data, holdout=0.1, seed=0, limit=args.rows + 8)
    with load(args.base, pull=False) as chat:
        shared, _ = encode_pairs(chat, data.prompts, data.responses, 512)
    full = Encoded(shared.ids, shared.starts, 0)
    model = load_causal(store.require(args.base)[1], "lora", 0)
    bf16 = use_bf16("auto")
    order = np.argsort([len(x) for x in shared.ids])
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    rates: dict[str, list[float]] = {"full rows": [], "shared prefix": []}
    losses: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, enc in (("full rows", full), ("shared prefix", shared)):
            t0, total = time.perf_counter(), 0.0
            for idx in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    value = loss(model, enc, idx)
                value.backward()
                model.zero_grad(set_to_none=True)
                total += value.item()
            rates[name].append(len(order) / (time.perf_counter() - t0))
            losses[name] = total / len(batches)
    mean = np.mean([len(x) for x in shared.ids])
    print(f"{args.data}: {len(order)} rows, shared prefix {shared.prefix} tokens, ", end="")
    print(f"mean row {mean:.1f} tokens, bf16={bf16}")
    base = statistics.median(rates["full rows"])
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"  {name:14} {med:6.2f} rows/s  {med / base:4.2f}x  mean loss {losses[name]:.4f}")


if __name__ == "__main__":
    main()
