"""A fine-tuned classifier as fp32 PyTorch vs int8 ONNX (and fp32 ONNX, dynamic-int8 torch).

Run: .venv/bin/python benchmarks/classifier_int8.py [--model ft-sms] [--task sms_spam]
     [--repeats 3]

The model is one made by `slm finetune`. Each variant is built into a temp folder from it
(not registered), then all variants classify the task's whole test split in turn, the round
repeated; items/s are medians over the rounds, so every ratio comes from the same process and
the same minutes. Peak RSS is measured per variant in a fresh process (compress.measure).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from slmkit.catalog.store import Store
from slmkit.compress.encoder import compress_encoder
from slmkit.compress.measure import measure_in_child
from slmkit.evaluate import classification_metrics
from slmkit.runtime.encoder import weights_file
from slmkit.tasks.data import ClassificationTask, builtin_task
from slmkit.tasks.finetuned import EncoderClassifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ft-sms")
    ap.add_argument("--task", default="sms_spam")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    store = Store()
    _, path = store.require(args.model)
    spec = builtin_task(args.task)
    assert isinstance(spec, ClassificationTask)
    texts, gold = spec.load("test")
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"fp32-torch": path.parent}
        for qtype in ("int8", "onnx", "int8-torch"):
            folders[qtype] = Path(tmp) / qtype
            folders[qtype].mkdir()
            compress_encoder(path.parent, folders[qtype], qtype)
        n_threads = store.settings.n_threads
        clfs = {k: EncoderClassifier.from_path(f, n_threads=n_threads) for k, f in folders.items()}
        rates: dict[str, list[float]] = {k: [] for k in clfs}
        acc = {}
        for _ in range(args.repeats):
            for name, clf in clfs.items():
                t0 = time.perf_counter()
                preds = clf.predict(texts)
                rates[name].append(len(texts) / (time.perf_counter() - t0))
                acc[name] = classification_metrics(gold, [p.label for p in preds], spec.labels)
        rss = {
            k: measure_in_child("encoder", f, args.task, 200)["peak_rss_mb"]
            for k, f in folders.items()
        }
        sizes = {}
        for k, f in folders.items():
            sizes[k] = weights_file(f).stat().st_size
    base = statistics.median(rates["fp32-torch"])
    print(
        f"{args.model} on {args.task} test ({len(texts)} texts), {n_threads} threads, "
        f"{args.repeats} rounds"
    )
    print(
        "| variant | file MB | size vs fp32 | items/s (median) | vs fp32 torch | accuracy | "
        "macro F1 | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in clfs:
        med = statistics.median(rates[k])
        print(
            f"| {k} | {sizes[k] / 1e6:.1f} | {sizes[k] / sizes['fp32-torch']:.0%} | {med:.1f} "
            f"({min(rates[k]):.1f}-{max(rates[k]):.1f}) | {med / base:.2f}x | "
            f"{acc[k]['accuracy']:.4f} | {acc[k]['macro_f1']:.4f} | {rss[k]:.0f} |"
        )


if __name__ == "__main__":
    main()
