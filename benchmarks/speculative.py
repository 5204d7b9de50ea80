"""Speculative decoding with a draft model, against plain decoding, interleaved in one process.

    python benchmarks/speculative.py [--target qwen2.5-coder-1.5b-instruct]
        [--draft qwen2.5-coder-0.5b-instruct] [--rounds 2] [--max-tokens 96] [--engine]

Greedy chats over a code-writing prompt set and a chat prompt set, three ways: plain, the
draft forced on (the guard that turns unprofitable drafting off disabled), and the default
(guarded). Prints tokens/s per set (completion tokens over wall time, prefill included;
medians of --rounds), ratios to plain, drafted tokens kept, and how many texts are identical
to plain. Then what one decode of n rows costs against one row, for the target
and the draft: the numbers that decide whether drafting can pay on this machine.
--engine: the same requests one at a time through a continuous-batching engine given the
draft (`slm serve --draft`'s path: per-sequence streams, the engine's own draft context).
"""

from __future__ import annotations

import argparse
import statistics
import time

import slmkit
from slmkit.engine import Engine
from slmkit.options import make_options
from slmkit.runtime.cache import PromptCache
from slmkit.runtime.speculate import CostModel

CODE = [
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "Write a Python function that checks whether a string is a palindrome, ignoring case.",
    "Write a Python class Stack with push, pop, peek and is_empty methods.",
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Write a JavaScript function that debounces another function by a given delay.",
    "Write a SQL query that returns the ten customers with the highest total order amount.",
]
CHAT = [
    "What is the difference between a list and a tuple in Python?",
    "Give me three tips for writing readable code.",
    "Explain what an HTTP status code 404 means.",
    "How do I undo the last git commit but keep my changes?",
    "What is a race condition? Answer in a short paragraph.",
    "Suggest a name for a command-line tool that renames photos by date.",
]


def run_set(
    model: slmkit.Model,
    prompts: list[str],
    max_tokens: int,
    draft_max: int,
    engine: Engine | None = None,
) -> dict:
    tokens = drafted = kept = 0
    seconds = 0.0
    texts = []
    for p in prompts:
        t0 = time.perf_counter()
        if engine is None:
            out = model.chat(p, temperature=0, max_tokens=max_tokens, draft_max=draft_max)
            text, stats = out.text, out.stats
        else:
            toks = model.backend.tokenize(model.format_chat([{"role": "user", "content": p}]))
            opts = make_options(temperature=0, max_tokens=max_tokens, draft_max=draft_max)
            chunks = engine.generate(toks, model.options(opts), timeout=600)
            text, stats = "".join(c.text for c in chunks), chunks[-1].stats
        assert stats is not None
        seconds += time.perf_counter() - t0
        tokens += stats.completion_tokens
        drafted += stats.drafted_tokens
        kept += stats.accepted_tokens
        texts.append(text)
    return {"rate": tokens / seconds, "drafted": drafted, "kept": kept, "texts": texts}


def row_costs(model: slmkit.Model, label: str, sizes: tuple[int, ...] = (1, 2, 3, 5, 9)) -> None:
    """Median time of one decode of n rows (all keeping logits, as verification does)."""
    backend = model.backend
    runner = backend.batch_runner(n_ctx=1024, n_seq=1)  # type: ignore[call-arg]
    cache = PromptCache(runner)
    toks = backend.tokenize("def quicksort(items):\n    " * 40)[:300]
    cache.prefill(toks)
    base, cost = len(cache.tokens), {}
    for n in sizes:
        ts = []
        for _ in range(9):
            t0 = time.perf_counter()
            runner.decode([(toks[i], base + i, (0,), True) for i in range(n)])
            ts.append(time.perf_counter() - t0)
            runner.forget(0, base)
        cost[n] = statistics.median(ts)
    runner.close()
    one = cost[1]
    cells = ", ".join(f"{n} rows {v * 1000:.1f} ms ({v / one:.2f}x)" for n, v in cost.items())
    print(f"{label}: {cells}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--k", type=int, default=8, help="most tokens drafted per step")
    ap.add_argument("--engine", action="store_true", help="through an engine given the draft")
    args = ap.parse_args()
    model = slmkit.load(args.target, n_ctx=2048, draft=args.draft)
    engine = None
    if args.engine:
        assert model.draft is not None
        engine = Engine(model.backend, n_seq=4, n_ctx=8192, per_seq=True, draft=model.draft.backend)
    modes = {"plain": (0, True), "forced": (args.k, False), "guarded": (args.k, True)}
    for name, prompts in (("code", CODE), ("chat", CHAT)):
        got: dict[str, list[dict]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for mode, (k, guard) in modes.items():
                # a fresh cost model per set: the guarded figure includes its learning
                model.backend.costs = CostModel(guard=guard)  # type: ignore[attr-defined]
                if engine is not None:
                    engine.costs = model.backend.costs  # type: ignore[attr-defined]
                got[mode].append(run_set(model, prompts, args.max_tokens, k, engine))
                costs = model.backend.costs  # type: ignore[attr-defined]
                got[mode][-1]["caps"] = (costs.exact_rows, costs.exact_rows_long)
        plain = statistics.median(r["rate"] for r in got["plain"])
        where = ", engine" if engine is not None else ""
        print(
            f"{name} ({len(prompts)} prompts, greedy, {args.max_tokens} tokens max, "
            f"{args.rounds} interleaved rounds{where}): plain {plain:.1f} tok/s"
        )
        for mode in ("forced", "guarded"):
            rate = statistics.median(r["rate"] for r in got[mode])
            last = got[mode][-1]
            ref = got["plain"][0]["texts"]
            same = sum(a == b for r in got[mode] for a, b in zip(r["texts"], ref, strict=True))
            print(
                f"  {mode}: {rate:.1f} tok/s, ratio {rate / plain:.3f}; kept "
                f"{last['kept']}/{last['drafted']} drafted; identical to plain: {same}; "
                f"verify batches of at most {last['caps'][0]} rows within 256 cells, "
                f"{last['caps'][1] or '-'} beyond (the measured exactness caps)"
            )
    if engine is not None:
        engine.close()
    row_costs(model, args.target)
    assert model.draft is not None
    row_costs(model.draft, args.draft)
    model.close()


if __name__ == "__main__":
    main()
