"""Mixed load on one engine: chat requests and classifications while a long document is
summarized (the server's path: /v1/summarize and /v1/classify go through the model's engine,
each at most half its slots).

    python benchmarks/mixed_load.py [--model smollm2-135m-instruct] [--chats 12]

Runs the chats (and classifications) twice, alone and beside a QMSum transcript's
map-reduce summary, interleaved in one process; prints each chat's wait for its first token
in engine steps (the steps that ran between its submission and the step that sampled it)
and seconds, p50/p95/max, and the classification latency.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import slmkit
from slmkit.engine import Engine
from slmkit.evaluate.runner import task_spec
from slmkit.options import make_options
from slmkit.tasks.classify import LikelihoodClassifier
from slmkit.tasks.summarize import Summarizer

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Write one sentence about the sea.",
    "What is 12 times 12?",
]


def chat_waits(model: slmkit.Model, engine: Engine, n: int) -> list[tuple[int, float]]:
    """Submit n short chats one after another; (steps waited, seconds) to each first token."""
    out = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)]
        tokens = model.backend.tokenize(model.format_chat([{"role": "user", "content": q}]))
        first: list[tuple[int, float]] = []
        done = threading.Event()

        def emit(c: object, first: list = first, done: threading.Event = done) -> None:
            if not first:
                first.append((engine.steps, time.perf_counter()))
            if getattr(c, "finish_reason", None) is not None:
                done.set()

        at, t0 = engine.steps, time.perf_counter()
        engine.submit(tokens, make_options(temperature=0, max_tokens=16), emit)
        done.wait(120)
        out.append((first[0][0] - at, first[0][1] - t0))
    return out


def classify_s(clf: LikelihoodClassifier) -> float:
    t0 = time.perf_counter()
    clf.predict(["WINNER! Claim your free prize now", "See you at lunch tomorrow?"])
    return time.perf_counter() - t0


def report(name: str, waits: list[tuple[int, float]], cls: list[float]) -> None:
    steps = sorted(w[0] for w in waits)
    secs = sorted(w[1] for w in waits)
    p95 = secs[max(0, round(0.95 * len(secs)) - 1)]
    print(
        f"{name}: first-token wait steps p50 {statistics.median(steps):.0f} max {steps[-1]}; "
        f"seconds p50 {statistics.median(secs):.3f} p95 {p95:.3f}; "
        f"classify 2 texts {statistics.median(cls):.3f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--chats", type=int, default=12)
    args = ap.parse_args()
    model = slmkit.load(args.model, n_ctx=1024)
    docs, _ = task_spec("qmsum").load(1)
    # per-sequence streams of 1024 cells, as `slm serve` lays out its engine by default
    engine = Engine(model.backend, n_seq=8, n_ctx=8 * 1024, per_seq=True, long_ctx=1024)
    clf = LikelihoodClassifier(model, ["ham", "spam"], engine=engine, window=4)
    clf.predict(["warm up"])
    summarizer = Summarizer(model, max_words=60, engine=engine, window=4)
    try:
        alone = chat_waits(model, engine, args.chats)
        cls_alone = [classify_s(clf) for _ in range(3)]
        result: list[object] = []
        worker = threading.Thread(target=lambda: result.append(summarizer(docs[0])))
        t0 = time.perf_counter()
        worker.start()
        while engine.running < 4:
            time.sleep(0.01)
        beside = chat_waits(model, engine, args.chats)
        cls_beside = [classify_s(clf) for _ in range(3)]
        still = worker.is_alive()
        worker.join()
        took = time.perf_counter() - t0
    finally:
        engine.close()
    print(f"{args.model}, engine 8 slots, summary window 4, {args.chats} chats of 16 tokens")
    report("alone", alone, cls_alone)
    report("beside a summary", beside, cls_beside)
    res = result[0]
    print(
        f"summary: {res.chunks} chunks, {res.levels} levels, {took:.1f} s; "  # type: ignore[attr-defined]
        f"still running when the chats ended: {still}"
    )


if __name__ == "__main__":
    main()
