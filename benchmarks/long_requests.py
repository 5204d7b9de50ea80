"""Several chats too long for a per-sequence stream at once, through an engine shaped as
`slm serve`'s (16 streams of 1024 cells; longer requests in the long-request lane), with the
long lane holding 1 stream (one long request at a time, as before 2026-11-30) or 2 (now),
interleaved in one process.

    python benchmarks/long_requests.py [--model smollm2-135m-instruct] [--clients 4]
        [--max-tokens 128] [--rounds 2] [--ask copy|last]

Prints, per layout and round, the wall time until every chat finished, time to first token
p50 / max and completion tokens per second (the model may stop a chat before max_tokens);
then the medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import slmkit
from slmkit.engine import Engine
from slmkit.options import make_options

ASKS = {
    "copy": "Copy the whole list {i}, one item per line.",  # a long answer
    "last": "What is the last item of list {i}?",  # a few tokens
}


def long_prompt(model: slmkit.Model, i: int, ask: str) -> list[int]:
    """A chat of about 1,600 tokens: a numbered list, then a request about it."""
    items = "\n".join(f"{n}. item {n * (i + 3)} of list {i}" for n in range(120))
    q = f"Here is a list:\n{items}\n" + ASKS[ask].format(i=i)
    return model.backend.tokenize(model.format_chat([{"role": "user", "content": q}]))


def run(
    engine: Engine, prompts: list[list[int]], max_tokens: int
) -> tuple[float, list[float], int]:
    """Submit every prompt at once; (seconds until all finished, each time to first token,
    completion tokens in all)."""
    firsts: list[float] = [0.0] * len(prompts)
    made = [0]
    done = threading.Semaphore(0)
    t0 = time.perf_counter()

    def emit(i: int, c: object) -> None:
        if not firsts[i]:
            firsts[i] = time.perf_counter() - t0
        if getattr(c, "finish_reason", None) is not None:
            made[0] += c.stats.completion_tokens  # type: ignore[attr-defined]
            done.release()

    opts = make_options(temperature=0, max_tokens=max_tokens)
    for i, p in enumerate(prompts):
        engine.submit(p, opts, lambda c, i=i: emit(i, c))
    for _ in prompts:
        done.acquire()
    return time.perf_counter() - t0, firsts, made[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ask", choices=sorted(ASKS), default="copy")
    args = ap.parse_args()
    model = slmkit.load(args.model, n_ctx=4096)
    prompts = [long_prompt(model, i, args.ask) for i in range(args.clients)]
    assert min(map(len, prompts)) + args.max_tokens > 1024, "prompts must exceed one stream"
    engines = {
        n: Engine(model.backend, n_seq=16, n_ctx=16384, per_seq=True, long_ctx=4096, long_seq=n)
        for n in (1, 2)
    }
    walls: dict[int, list[float]] = {1: [], 2: []}
    rates: dict[int, list[float]] = {1: [], 2: []}
    ttft: dict[int, list[float]] = {1: [], 2: []}
    try:
        for e in engines.values():  # warm-up: make each long lane's context
            run(e, prompts[:1], 4)
        for r in range(args.rounds):
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                wall, firsts, made = run(engines[n], prompts, args.max_tokens)
                walls[n].append(wall)
                rates[n].append(made / wall)
                ttft[n] += firsts
                print(
                    f"round {r} long lane of {n}: {wall:.1f} s, TTFT p50 "
                    f"{statistics.median(firsts):.2f} s max {max(firsts):.2f} s, {made} tokens"
                )
    finally:
        for e in engines.values():
            e.close()
    print(
        f"{args.model}, {args.clients} chats of {min(map(len, prompts))}-"
        f"{max(map(len, prompts))} prompt tokens, {args.max_tokens} greedy tokens each"
    )
    for n in (1, 2):
        wall, rate = statistics.median(walls[n]), statistics.median(rates[n])
        print(
            f"  long lane of {n}: {wall:.1f} s ({rate:.1f} completion tok/s), TTFT p50 "
            f"{statistics.median(ttft[n]):.2f} s max {max(ttft[n]):.2f} s"
        )
    print(f"  2 streams / 1: {statistics.median(walls[1]) / statistics.median(walls[2]):.2f}x")


if __name__ == "__main__":
    main()
