"""Zero-shot classification scored two ways on the same texts, interleaved in one process:
on the model's own scoring context (`slm classify`, `slm eval`) and through a server-shaped
engine (per-sequence streams, 16 slots, half of them for the classification: /v1/classify's
path), alone and beside chats that keep the engine busy (the own-context path then competes
with the engine thread for the cores, as /v1/classify did before it used the engine).

    python benchmarks/classify_engine.py [--model smollm2-135m-instruct] [--task sms_spam]
        [--n 64] [--rounds 3] [--kv-layout per-seq|shared]

Prints items/s of each path per round and their medians, the engine/own-context ratio, how
many predictions agree and the largest probability difference, between the two paths and
against one-sequence-at-a-time scoring.
"""

from __future__ import annotations

import argparse
import statistics
import time

import slmkit
from slmkit.engine import Engine
from slmkit.evaluate.runner import task_spec
from slmkit.options import make_options
from slmkit.tasks.classify import LikelihoodClassifier, Prediction
from slmkit.tasks.data import ClassificationTask


def timed(clf: LikelihoodClassifier, texts: list[str]) -> tuple[float, list[Prediction]]:
    t0 = time.perf_counter()
    preds = clf.predict(texts)
    return len(texts) / (time.perf_counter() - t0), preds


def compare(a: list[Prediction], b: list[Prediction]) -> tuple[int, float]:
    """(predictions with the same label, the largest difference of any label's probability)"""
    same = sum(x.label == y.label for x, y in zip(a, b, strict=True))
    diff = max(abs(x.probs[k] - y.probs[k]) for x, y in zip(a, b, strict=True) for k in x.probs)
    return same, diff


def busy(model: slmkit.Model, engine: Engine, n: int) -> list:
    """n long greedy chats in the engine (cancelled by the caller)."""
    msgs = [{"role": "user", "content": "Tell me a long story about the sea."}]
    tokens = model.backend.tokenize(model.format_chat(msgs))
    opts = make_options(temperature=0, max_tokens=600)
    return [engine.submit(tokens, opts, lambda c: None) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="sms_spam")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chats", type=int, default=4, help="chats beside the engine's last run")
    ap.add_argument("--kv-layout", choices=("per-seq", "shared"), default="per-seq")
    args = ap.parse_args()
    spec = task_spec(args.task)
    assert isinstance(spec, ClassificationTask)
    texts, _ = spec.load("test", args.n)
    model = slmkit.load(args.model, n_ctx=4096)
    per_seq = args.kv_layout == "per-seq"
    engine = Engine(
        model.backend,
        n_seq=16,
        n_ctx=16 * 1024,
        per_seq=per_seq,
        long_ctx=4096 if per_seq else None,
    )
    kw = {"instruction": spec.instruction}
    own = LikelihoodClassifier(model, spec.labels, **kw)  # type: ignore[arg-type]
    via = LikelihoodClassifier(model, spec.labels, engine=engine, window=8, **kw)  # type: ignore[arg-type]
    rates: dict[str, list[float]] = {
        k: [] for k in ("own", "engine", "own + chats", "engine + chats")
    }
    try:
        own.predict(texts[:2]), via.predict(texts[:2])  # calibration priors, warm caches
        for r in range(args.rounds):
            if r % 2:  # alternate which path goes first
                b, pb = timed(via, texts)
                a, pa = timed(own, texts)
            else:
                a, pa = timed(own, texts)
                b, pb = timed(via, texts)
            for name, clf in (("own + chats", own), ("engine + chats", via)):
                handles = busy(model, engine, args.chats)
                rates[name].append(timed(clf, texts)[0])
                for h in handles:
                    h.cancel()
            rates["own"].append(a)
            rates["engine"].append(b)
            print(f"round {r}: " + "  ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items()))
    finally:
        engine.close()
    # one sequence at a time (no batching): the rounding both batched paths depart from
    single = LikelihoodClassifier(model, spec.labels, batched=False, **kw)  # type: ignore[arg-type]
    ps = single.predict(texts)
    n = len(texts)
    med = {k: statistics.median(v) for k, v in rates.items()}
    n_labels = len(spec.labels)
    print(f"{args.model}, {args.task}, {len(texts)} texts, {n_labels} labels, {args.kv_layout}")
    for k, v in med.items():
        print(f"  {k}: {v:.2f} items/s")
    print(
        f"  engine / own context: {med['engine'] / med['own']:.2f}x alone, "
        f"{med['engine + chats'] / med['own + chats']:.2f}x beside {args.chats} chats"
    )
    for name, x, y in (
        ("engine vs own", pb, pa),
        ("own vs one-sequence", pa, ps),
        ("engine vs one-sequence", pb, ps),
    ):
        same, diff = compare(x, y)
        print(f"  {name}: same label {same}/{n}, largest probability difference {diff:.4f}")


if __name__ == "__main__":
    main()
