"""What a seeded request costs the traffic beside it (the engine's solo lane).

    python benchmarks/solo_cost.py [--model smollm2-135m-instruct] [--rounds 3]

In one process, on one engine (4 sequences): three sampled streams run while a fourth runs
(a) unseeded, in the shared batch, or (b) seeded, in the solo lane (its own context, decoded
after the main batch each step). Prints the three streams' aggregate tokens/s in each case
as medians of interleaved rounds, their ratio, and the process's RSS before and after the
solo lane's context is made.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import slmkit
from slmkit.catalog.memory import proc_status_mb
from slmkit.engine import Engine
from slmkit.options import make_options


def run_round(engine: Engine, model: slmkit.Model, seeded: bool, n_tokens: int) -> float:
    def toks(q: str) -> list[int]:
        return model.backend.tokenize(model.format_chat([{"role": "user", "content": q}]))

    counts = [0, 0, 0]
    threads = []
    start = time.perf_counter()
    ends = [0.0, 0.0, 0.0]

    def other(i: int) -> None:
        opts = make_options(temperature=0.8, max_tokens=n_tokens)
        out = engine.generate(toks(f"Write a long story about a ship, part {i}."), opts)
        counts[i] = out[-1].stats.completion_tokens if out[-1].stats else 0
        ends[i] = time.perf_counter()

    fourth = make_options(temperature=0.8, max_tokens=n_tokens, seed=1 if seeded else None)
    for i in range(3):
        threads.append(threading.Thread(target=other, args=(i,)))
    for t in threads:
        t.start()
    engine.generate(toks("Write a long story about a mountain."), fourth)
    for t in threads:
        t.join()
    return sum(counts) / (max(ends) - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    model = slmkit.load(args.model, n_ctx=4096)
    engine = Engine(model.backend, n_seq=4, n_ctx=4096)
    try:
        run_round(engine, model, False, 16)  # warm-up
        rss_before = proc_status_mb("VmRSS")
        run_round(engine, model, True, 16)  # makes the solo lane's context
        rss_after = proc_status_mb("VmRSS")
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for seeded in (False, True):
                rates[seeded].append(run_round(engine, model, seeded, args.tokens))
    finally:
        engine.close()
    plain, solo = (statistics.median(rates[k]) for k in (False, True))
    print(f"model {args.model}, {args.rounds} interleaved rounds, {args.tokens} tokens per stream")
    print(f"three streams beside an unseeded fourth (shared batch): {plain:.1f} tok/s")
    print(f"three streams beside a seeded fourth (solo lane):        {solo:.1f} tok/s")
    print(f"ratio solo/shared: {solo / plain:.3f}")
    print(f"RSS before the solo lane: {rss_before or 0:.0f} MB, after: {rss_after or 0:.0f} MB")


if __name__ == "__main__":
    main()
