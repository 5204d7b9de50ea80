"""`make demo`'s poem: the most any 4-gram repeats, per seed and repetition penalty.

    python benchmarks/demo_poem.py [--seeds 8] [--penalties 1.1 1.15 1.2]

The default model, the demo's prompt and the model card's sampling (what `make demo` uses,
cli/generate.py demo_poem_options) with each repeat_penalty, 160 tokens, seeds 1..N.
"""

from __future__ import annotations

import argparse
import collections

import slmkit
from slmkit.cli.generate import demo_poem_options


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--penalties", type=float, nargs="+", default=[1.1, 1.15, 1.2])
    args = ap.parse_args()
    model = slmkit.load(slmkit.DEFAULT_MODEL, n_ctx=2048)
    msgs = [{"role": "user", "content": "Write a short poem about the sea."}]
    for penalty in args.penalties:
        opts = {**demo_poem_options(model), "repeat_penalty": penalty}
        worst = []
        for seed in range(1, args.seeds + 1):
            words = model.chat(msgs, seed=seed, max_tokens=160, **opts).text.split()
            grams = collections.Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
            worst.append(max(grams.values(), default=0))
        print(
            f"repeat_penalty {penalty}: most repeats of any 4-gram, seeds 1-{args.seeds}: {worst}"
        )


if __name__ == "__main__":
    main()
