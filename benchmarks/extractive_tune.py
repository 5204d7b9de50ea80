"""Choose the extractive summarizer's defaults on training rows only: ROUGE-L of lead-k and
of a grid of (lead_weight, diversity, lead_scale, max_words) on a dataset's training split.

    .venv/bin/python benchmarks/extractive_tune.py --task cnn_dailymail-train --limit 300

The sentence embeddings are computed once per document; the grid reuses them.
"""

from __future__ import annotations

import argparse
import itertools
import time

from slmkit.evaluate import rouge
from slmkit.evaluate.runner import task_spec
from slmkit.tasks.embed import load_embedder
from slmkit.tasks.extractive import ExtractiveSummarizer, lead, split_sentences


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="cnn_dailymail-train")
    ap.add_argument("--limit", type=int, default=300)
    args = ap.parse_args()
    docs, refs = task_spec(args.task).load(args.limit)
    for k in range(1, 7):
        print(f"lead-{k}", rouge([lead(d, k) for d in docs], refs))
    base = ExtractiveSummarizer(load_embedder("minilm-int8"))
    t0 = time.perf_counter()
    sents = [split_sentences(d) for d in docs]
    embs = [base._embed(s, None) for s in sents]
    print(f"embedding: {1000 * (time.perf_counter() - t0) / len(docs):.0f} ms per document")
    grid = itertools.product((0.1, 0.2, 0.3, 0.5), (0.2, 0.5, 0.8), (2.0, 4.0, 8.0), (45, 60, 75))
    results = []
    for lw, div, scale, words in grid:
        s = ExtractiveSummarizer(
            base.embedder, max_words=words, lead_weight=lw, diversity=div, lead_scale=scale
        )
        outs = [" ".join(x[i] for i in s.select(x, e)) for x, e in zip(sents, embs, strict=True)]
        results.append((rouge(outs, refs)["rougeL"], lw, div, scale, words))
    for r in sorted(results, reverse=True)[:10]:
        print("rougeL {:.4f}  lead_weight {} diversity {} lead_scale {} max_words {}".format(*r))


if __name__ == "__main__":
    main()
