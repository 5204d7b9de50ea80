"""`slm optimize` per model, with its candidate table, and the chosen file against llama.cpp's
own llama-bench on the same files in the same run.

Run: .venv/bin/python benchmarks/optimize_table.py [--models smollm2-135m-instruct,...]
     [--kld-tokens 20480] [--limit 872] [--repeats 3] [--candidates q8_0,q4_0,...]
     [--no-llama-bench] [--skip-optimize] [--rows-only]

Each model is imported into a temp store (the user's store is left as it is) and optimized
with the defaults of `slm optimize` (mean KLD <= 0.02, decode >= 0.95x, SST-2 zero-shot drop
<= 1 point; --limit 872 is the full SST-2 dev split). Then, for the source and the chosen file,
rounds alternate between slmkit and llama-bench (built from the vendored llama.cpp with the
same flags as slmkit's build, benchmarks/_servers.py):
- prefill: slmkit `Model.stream` on a ~1k-token chat prompt (prompt tokens / prompt seconds)
  against llama-bench pp512 and pp1024;
- decode: slmkit tokens/s after that prompt against llama-bench tg128 at depth 1024 (-d 1024),
  and slmkit after a short prompt against tg128 at depth 0.
Both use the runtime settings slm optimize chose (flash attention, threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _servers import build_llama_server

import slmkit
from slmkit.catalog.store import Store
from slmkit.compress.optimize import OptimizeConfig, measure_rows, optimize, tune_runtime
from slmkit.errors import ChatTemplateError, GuardRefusedError
from slmkit.runtime.base import GenerationStats
from slmkit.runtime.llamacpp_measure import tokenize_file
from slmkit.runtime.native import LLAMA_CPP_VERSION, cpu_info
from slmkit.settings import Settings
from slmkit.tasks.data import dataset_file

MODELS = (
    "smollm2-135m-instruct",
    "gemma-3-270m",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)
SHORT = [{"role": "user", "content": "Write a long story about a dragon who learns to read."}]


def stage(label: str, total: int) -> Any:
    print(f"  .. {label} ({total} steps)", flush=True)
    return lambda n: None


def article(words: int = 700) -> str:
    with dataset_file("cnn_dailymail", "validation_1000.jsonl").open() as f:
        text = json.loads(f.readline())["document"]
    return " ".join(text.split()[:words])


def table(report: dict[str, Any]) -> None:
    print(f"\n{report['model']} ({report['source_type']}; {report['note'] or 'float source'})")
    print(f"rule: {report['rule']}")
    print(
        "| candidate | MB | prefill t/s | decode t/s | x prefill | x decode | KLD mean | KLD p99 "
        "| top-1 | SST-2 | verdict |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["candidates"]:
        verdict = (
            "source"
            if r["candidate"] == "source"
            else ("**chosen**" if r.get("chosen") else f"refused: {r.get('refused')}")
        )
        score = "-" if r.get("score") is None else f"{r['score']:.1f}"
        print(
            f"| {r['candidate']} | {r['size_bytes'] / 1e6:.0f} | {r['prefill_tps']:.0f} | "
            f"{r['decode_tps']:.1f} | {r['prefill_x']:.2f} | {r['decode_x']:.2f} | "
            f"{r['kld_mean']:.4f} | {r['kld_p99']:.3f} | {r['top1_agreement']:.3f} | {score} "
            f"| {verdict} |"
        )


def answer(model: slmkit.Model, text: str) -> GenerationStats:
    """128 greedy tokens after `text`: as a chat turn, or as plain text for a base model."""
    try:
        st = list(model.stream([{"role": "user", "content": text}], temperature=0, max_tokens=128))[
            -1
        ].stats
    except ChatTemplateError:
        st = model.complete(text, temperature=0, max_tokens=128).stats
    model.backend.clear_cache()  # type: ignore[attr-defined]
    assert st is not None
    return st


def slmkit_rates(model: slmkit.Model, long: str) -> dict[str, float]:
    st = answer(model, long)
    short = answer(model, SHORT[0]["content"])
    return {
        "prompt_tokens": st.prompt_tokens,
        "prefill": st.prompt_tokens / st.prompt_s,
        "decode_at_prompt": st.tokens_per_s,
        "decode_short": short.tokens_per_s,
    }


def bench_rates(binary: Path, file: Path, threads: int, flash: bool) -> dict[str, float]:
    fa = "on" if flash else "off"
    base = [str(binary), "-m", str(file), "-t", str(threads), "-fa", fa, "-r", "3"]
    out: dict[str, float] = {}
    for extra in (["-p", "512,1024", "-n", "128"], ["-p", "0", "-n", "128", "-d", "1024"]):
        done = subprocess.run([*base, *extra, "-o", "json"], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr[-500:])
        for row in json.loads(done.stdout):
            depth = row.get("n_depth", 0)
            name = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}@d{depth}"
            out[name] = row["avg_ts"]
    return out


def row_costs(store: Store, model_id: str, report: dict[str, Any]) -> None:
    """Seconds of one decode of 1..16 rows (after 256 tokens), the source file against the
    chosen one, with the chosen runtime settings: what a verify batch of n rows costs."""
    runtime = (report.get("runtime") or {}).get("chosen")
    if not runtime:
        return
    _, src = store.require(f"{model_id}@source")
    before = measure_rows(src, tokenize_file(src, article()), runtime)
    after = runtime.get("row_seconds") or before  # nothing chosen: the source is what runs
    print(
        f"\nrow-count cost, ms per decode call after 256 tokens (source {src.name} -> "
        f"{report['chosen'] or 'nothing chosen: the source'}; flash_attn={runtime['flash_attn']}, "
        f"threads={runtime['n_threads']}):"
    )
    print("| rows | source ms | per row | x 1 row | chosen ms | per row |")
    print("|---|---|---|---|---|---|")
    for n in sorted(after, key=int):
        b, a = before[n] * 1e3, after[n] * 1e3
        print(
            f"| {n} | {b:.1f} | {b / int(n):.1f} | {before[n] / before['1']:.2f} | {a:.1f} "
            f"| {a / int(n):.1f} |"
        )


def source_runtime(store: Store, model_id: str, cfg: OptimizeConfig) -> dict[str, Any]:
    """--skip-optimize: the runtime measurement `slm optimize` makes, on the source alone."""
    _, src = store.require(f"{model_id}@source")
    prompt = tokenize_file(src, article())[: cfg.prompt_tokens]
    return {"chosen": None, "runtime": tune_runtime(src, prompt, cfg, (2, 1))}


def runtime_lines(report: dict[str, Any]) -> None:
    for t in (report.get("runtime") or {}).get("trials", []):
        print(
            f"  runtime ({report['chosen'] or 'source'}) flash_attn={t['flash_attn']} "
            f"threads={t['n_threads']}: prefill {t['prefill_tps']:.0f} t/s, decode "
            f"{t['decode_tps']:.1f} t/s, {t['seconds']:.2f} s for the prompt + 128 tokens"
        )


def compare(store: Store, model_id: str, chosen: str | None, binary: Path | None) -> None:
    if binary is None:
        return
    long = article()
    for which in [f"{model_id}@source", *([model_id] if chosen else [])]:
        with slmkit.load(which, store=store, n_ctx=2048) as m:
            flash = bool(m.entry.runtime.get("flash_attn", True))
            threads = m.backend.n_threads  # type: ignore[attr-defined]
            ours, theirs = [], []
            for _ in range(2):
                ours.append(slmkit_rates(m, long))
                theirs.append(bench_rates(binary, m.path, threads, flash))
        o = {k: statistics.median(r[k] for r in ours) for k in ours[0]}
        t = {k: statistics.median(r[k] for r in theirs) for k in theirs[0]}
        print(
            f"\n{m.id} ({m.path.name}, flash_attn={flash}, threads={threads}), medians of 2 "
            "alternating rounds:"
        )
        print(
            f"  prefill: slmkit {o['prefill']:.0f} t/s on {o['prompt_tokens']:.0f} tokens | "
            f"llama-bench pp512 {t['pp512']:.0f}, pp1024 {t['pp1024']:.0f} | slmkit/pp1024 "
            f"{o['prefill'] / t['pp1024']:.3f}"
        )
        print(
            f"  decode: slmkit short prompt {o['decode_short']:.1f} | tg128 {t['tg128@d0']:.1f} "
            f"| ratio {o['decode_short'] / t['tg128@d0']:.3f}"
        )
        print(
            f"  decode at ~1k: slmkit {o['decode_at_prompt']:.1f} | tg128 -d 1024 "
            f"{t['tg128@d1024']:.1f} | ratio {o['decode_at_prompt'] / t['tg128@d1024']:.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--kld-tokens", type=int, default=20480)
    ap.add_argument("--limit", type=int, default=872)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--candidates", default="")
    ap.add_argument("--no-llama-bench", action="store_true")
    ap.add_argument(
        "--skip-optimize", action="store_true", help="runtime, row costs and llama-bench only"
    )
    ap.add_argument("--rows-only", action="store_true", help="the source's row-cost table only")
    args = ap.parse_args()
    print(f"CPU: {cpu_info()['model']}")
    binary = None
    if not args.no_llama_bench:
        cache = Path.home() / ".cache" / "slmkit-bench" / f"llama-server-{LLAMA_CPP_VERSION}"
        server = build_llama_server(LLAMA_CPP_VERSION, cache)
        binary = server.parent / "llama-bench" if server else None
    real = Store()
    for model_id in args.models.split(","):
        _, src = real.require(model_id)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp), Settings(home=Path(tmp)))
            store.import_file(src, model_id=model_id)
            cfg = OptimizeConfig(kld_tokens=args.kld_tokens, limit=args.limit, repeats=args.repeats)
            if args.candidates:
                cfg.recipes = tuple(args.candidates.split(","))
            print(f"\n== {model_id}", flush=True)
            if args.rows_only:  # the defaults a plain load uses: flash attention on, 2 threads
                report = {
                    "chosen": None,
                    "runtime": {"chosen": {"flash_attn": True, "n_threads": 2}},
                }
                row_costs(store, model_id, report)
                continue
            if args.skip_optimize:
                report = source_runtime(store, model_id, cfg)
            else:
                try:
                    report = optimize(model_id, cfg, store=store, progress=stage).report
                except GuardRefusedError as e:
                    report = e.report
                table(report)
            runtime_lines(report)
            row_costs(store, model_id, report)
            compare(store, model_id, report["chosen"], binary)


if __name__ == "__main__":
    main()
