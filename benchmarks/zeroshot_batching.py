"""Zero-shot throughput: batched multi-sequence scoring vs one (text, label) at a time.

Run: .venv/bin/python benchmarks/zeroshot_batching.py [--model ID] [--limit N]

Same model, same process, SST-2 dev, calibrated zero-shot. Three ways to score:
- batched: `Model.loglikelihood_many` (shared prefix once, each text once, all labels in
  shared batches on a multi-sequence context);
- single (prefix cache): one `Model.loglikelihood` call per (text, label); the runtime's KV
  cache still reuses the prompt prefix shared with the previous call;
- single (no reuse): the same calls with the cache cleared before each, i.e. every pair
  re-reads its whole prompt.
"""

from __future__ import annotations

import argparse
import time

import slmkit
from slmkit.tasks.classify import LikelihoodClassifier
from slmkit.tasks.data import ClassificationTask, builtin_task


class _NoReuse(LikelihoodClassifier):
    def _scores(self, prompts):  # type: ignore[no-untyped-def]
        backend = self.model.backend
        orig = backend.loglikelihood

        def fresh(c, x):  # type: ignore[no-untyped-def]
            backend.clear_cache()  # type: ignore[attr-defined]
            return orig(c, x)

        backend.loglikelihood = fresh  # type: ignore[method-assign]
        try:
            return super()._scores(prompts)
        finally:
            del backend.loglikelihood


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    spec = builtin_task("sst2")
    assert isinstance(spec, ClassificationTask)
    texts, gold = spec.load("test", args.limit)
    model = slmkit.load(args.model, n_ctx=2048, pull=True)
    rates = {}
    for name, cls, batched in (
        ("batched", LikelihoodClassifier, True),
        ("single (prefix cache)", LikelihoodClassifier, False),
        ("single (no reuse)", _NoReuse, False),
    ):
        clf = cls(model, spec.labels, instruction=spec.instruction, batched=batched)
        clf.prior()  # calibration inputs are scored once, outside the timing
        t0 = time.perf_counter()
        preds = clf.predict(texts)
        dt = time.perf_counter() - t0
        acc = sum(p.label == g for p, g in zip(preds, gold, strict=True)) / len(gold)
        rates[name] = len(texts) / dt
        print(
            f"{name:24} {rates[name]:7.2f} items/s  accuracy {acc:.4f}  "
            f"({len(texts)} items, {dt:.1f} s)"
        )
    for name in list(rates)[1:]:
        print(f"batched / {name}: {rates['batched'] / rates[name]:.2f}x")


if __name__ == "__main__":
    main()
