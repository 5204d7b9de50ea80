"""Prompt-lookup decoding, with and without drafts, interleaved in one process.

    python benchmarks/prompt_lookup.py [--model qwen2.5-coder-0.5b-instruct] [--n 60] [--k 8]
    python benchmarks/prompt_lookup.py --copy [--model smollm2-135m-instruct] [--rounds 5]
    python benchmarks/prompt_lookup.py --copy --engine [--rounds 5]

Default: the same SMS texts through `Extractor` (JSON grammar); prints items/s both ways
(medians of --rounds passes), their ratio and how many outputs are identical. --copy: a chat
asking to repeat a paragraph (80 tokens, greedy); prints tokens/s both ways, whether the
texts are identical and how many drafted tokens were kept. --engine: the copy chat as a lone
request in a continuous-batching engine laid out as `slm serve`'s (per-sequence streams),
where the server's `prompt_lookup` field drafts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import slmkit
from slmkit.engine import Engine
from slmkit.evaluate.runner import SMS_SCHEMA
from slmkit.options import make_options
from slmkit.tasks.data import builtin_task
from slmkit.tasks.extract import Extractor

COPY = (
    "Repeat this paragraph exactly: The committee met on Tuesday to review the budget for the "
    "coming year. After a long discussion, the members agreed to increase spending on schools "
    "and roads, and to reduce the cost of administration by ten percent."
)


def copy_prompt(model_id: str, k: int, rounds: int, engine: bool) -> None:
    model = slmkit.load(model_id)
    rates: dict[int, list[float]] = {0: [], k: []}
    texts: dict[int, str] = {}
    kept = drafted = 0
    eng = Engine(model.backend, n_seq=16, n_ctx=16384, per_seq=True) if engine else None
    tokens = model.backend.tokenize(model.format_chat([{"role": "user", "content": COPY}]))
    for _ in range(rounds):
        for n in (0, k):
            t0 = time.perf_counter()
            if eng is None:
                out = model.chat(COPY, temperature=0, max_tokens=80, prompt_lookup=n)
                text, stats = out.text, out.stats
            else:
                opts = make_options(temperature=0, max_tokens=80, prompt_lookup=n)
                chunks = eng.generate(tokens, opts, timeout=300)
                text, stats = "".join(c.text for c in chunks), chunks[-1].stats
            assert stats is not None
            rates[n].append(stats.completion_tokens / (time.perf_counter() - t0))
            texts[n] = text
            kept, drafted = stats.accepted_tokens or kept, stats.drafted_tokens or drafted
    if eng is not None:
        eng.close()
    p, f = statistics.median(rates[0]), statistics.median(rates[k])
    where = "engine (per-sequence streams), " if engine else ""
    print(f"{model_id}, copy prompt, {where}k={k}, {rounds} interleaved rounds")
    print(f"plain {p:.1f} tok/s, prompt lookup {f:.1f} tok/s: ratio {f / p:.3f}")
    print(f"identical text: {texts[0] == texts[k]}; drafts kept {kept}/{drafted} (last run)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--copy", action="store_true")
    ap.add_argument("--engine", action="store_true", help="--copy through the engine")
    args = ap.parse_args()
    if args.copy:
        copy_prompt(args.model or "smollm2-135m-instruct", args.k, args.rounds, args.engine)
        return
    args.model = args.model or "qwen2.5-coder-0.5b-instruct"
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
