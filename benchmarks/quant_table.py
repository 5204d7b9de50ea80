"""GGUF quantization levels of one model from its F16 form: size, decode tokens/s, peak RSS and
task accuracy per level, each measured in a fresh process (slmkit.compress.measure).

Run: .venv/bin/python benchmarks/quant_table.py [--model smollm2-135m-instruct] [--task sst2]
     [--limit 300] [--repeats 2]

SmolLM2's only weights reachable here are Q4_1, so its "F16" is that file expanded by
llama.cpp (`slm quantize --type f16 --allow-requantize`): the table measures what each level
costs and keeps relative to that F16, not relative to the original BF16 release. Levels are
built in a temp store; rounds interleave the levels and figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from slmkit.catalog.store import Store
from slmkit.compress import quantize
from slmkit.compress.measure import measure_in_child
from slmkit.settings import Settings

LEVELS = ("q8_0", "q5_k_m", "q4_k_m")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    real = Store()
    _, src = real.require(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp), Settings(home=Path(tmp)))
        store.import_file(src, model_id=args.model)
        quantize(args.model, "f16", "f16", allow_requantize=True, store=store)
        for level in LEVELS:
            quantize("f16", level, level, store=store)
        files = {"source " + src.name.split(".")[-2]: src}
        files |= {name.upper(): store.path(name) for name in ("f16", *LEVELS)}  # type: ignore[misc]
        runs: dict[str, list[dict]] = {k: [] for k in files}
        for _ in range(args.repeats):
            for name, path in files.items():
                runs[name].append(measure_in_child("gguf", path, args.task, args.limit))
    print(
        f"{args.model}, task {args.task} (first {args.limit} rows, zero-shot), "
        f"{args.repeats} rounds, medians"
    )
    print("| level | file MB | decode tokens/s | load s | peak RSS MB | accuracy | items/s |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():

        def med(key: str, rs: list[dict] = rs) -> float:
            return statistics.median(r[key] for r in rs)

        print(
            f"| {name} | {rs[0]['size_bytes'] / 1e6:.1f} | {med('decode_tokens_per_s'):.1f} | "
            f"{med('load_s'):.2f} | {med('peak_rss_mb'):.0f} | {rs[0]['score']:.1f} | "
            f"{med('items_per_s'):.1f} |"
        )


if __name__ == "__main__":
    main()
