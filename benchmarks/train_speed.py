"""Training rows/s of all-MiniLM-L6-v2 on one task, four ways, in one process: fp32 vs bf16
autocast, word embeddings trained vs frozen (slm finetune's default: bf16 where the CPU has
it, frozen embeddings).

Run: .venv/bin/python benchmarks/train_speed.py [--task banking77] [--rows 640] [--rounds 2]

Each variant takes the same optimizer steps over the same batches: --rows training rows
picked with a fixed seed, sorted by length into batches of 32 (as the length buckets do);
rounds interleave the variants and the figure is the median rows/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from slmkit.catalog.assets import MINILM_FP32, asset_dir
from slmkit.catalog.store import Store
from slmkit.tasks.data import builtin_task
from slmkit.train.encoder import build_model, encode, soft_cross_entropy

VARIANTS = {
    "fp32": (False, False),
    "fp32, frozen embeddings": (False, True),
    "bf16": (True, False),
    "bf16, frozen embeddings (default)": (True, True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="banking77")
    ap.add_argument("--rows", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    store = Store()
    torch.set_num_threads(store.settings.n_threads)
    texts, _ = builtin_task(args.task).load("train")  # type: ignore[union-attr]
    pick = np.random.default_rng(0).permutation(len(texts))[: args.rows]
    tok, model = build_model(asset_dir(store, MINILM_FP32), ["a", "b"], "full", 0)
    enc = encode(tok, [texts[i] for i in pick], 128)
    order = np.argsort(enc.lengths, kind="stable")
    batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    target = torch.zeros(len(order), 2)
    target[:, 0] = 1
    emb = model.get_input_embeddings().weight
    rates: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.rounds):
        for name, (bf16, frozen) in VARIANTS.items():
            emb.requires_grad_(not frozen)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
            model.train()
            t0 = time.perf_counter()
            for idx in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = model(**enc.batch(idx)).logits
                soft_cross_entropy(logits.float(), target[idx]).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            rates[name].append(len(order) / (time.perf_counter() - t0))
    tokens = float(np.mean(enc.lengths))
    print(
        f"{args.task}: {len(order)} rows, mean {tokens:.1f} tokens, batches of 32, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    base = statistics.median(rates["fp32"])
    print("| variant | rows/s (median) | vs fp32 |")
    print("|---|---|---|")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"| {name} | {med:.1f} ({min(r):.1f}-{max(r):.1f}) | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
