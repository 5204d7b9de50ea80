"""Measure and choose: `slm bench`, `slm report`, `slm recommend`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, open_store, options


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


BENCH_OPTIONS: list[Any] = [
    click.option(
        "--models",
        required=True,
        help="Comma-separated model ids and/or endpoint URLs (http://HOST:PORT/v1[#MODEL]).",
    ),
    click.option(
        "--tasks",
        required=True,
        help="Comma-separated tasks (sst2, sms_spam, banking77, "
        "cnn_dailymail, qmsum, extract_sms, qmsum_qa[-wide|-whole|-none]) or "
        "JSONL files of the same shape.",
    ),
    click.option(
        "--quants",
        default="",
        help="Comma-separated llama.cpp types (Q4_0,Q8_0,...): "
        "each model is measured at each; missing variants are made with `slm quantize`.",
    ),
    click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True),
    click.option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Results folder; a folder with results resumes where it stopped.",
    ),
    click.option(
        "--repeat",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="Timed generation runs per cell (after one warm-up).",
    ),
    click.option("--n-ctx", type=click.IntRange(min=256), default=2048, show_default=True),
    click.option("--threads", type=click.IntRange(min=1), help="Device profile: cores per cell."),
    click.option(
        "--ram-gb", type=click.FloatRange(min=0.05), help="Device profile: memory per cell."
    ),
    click.option(
        "--price-cpu-hour",
        type=click.FloatRange(min=0),
        default=0.04,
        show_default=True,
        help="USD per CPU-hour, for the cost per 1,000 requests.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=60.0,
        show_default=True,
        help="Seconds an endpoint may take to answer one request.",
    ),
    click.option("--cell-timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True),
    click.option("--retry-failed", is_flag=True, help="Run again the cells that failed before."),
    click.option(
        "--record/--no-record",
        default=True,
        show_default=True,
        help="Add finished cells to the store's log that `slm recommend` reads.",
    ),
]


@cli.command()
@options(BENCH_OPTIONS)
@fail_cleanly
def bench(out: Path, retry_failed: bool, record: bool, **kw: Any) -> None:
    """Measure a matrix of models x quantizations x tasks, one fresh process per cell, and
    write OUT/report.html (plots), OUT/results.json and OUT/cells.csv."""
    from slmkit.bench import BenchConfig, run_bench
    from slmkit.bench.recommend import record_measurements
    from slmkit.bench.report import render
    from slmkit.cli.base import item_progress

    for key in ("models", "tasks", "quants"):
        kw[key] = _split(kw[key])
    config = BenchConfig(**kw)
    store = open_store()
    with item_progress("bench", len(config.models) * len(config.tasks)) as advance:
        seen: set[str] = set()

        def progress(key: str, done: int, total: int) -> None:
            if done and key not in seen:
                advance(1)
            seen.add(key)
            click.echo(f"[{done + 1 if done < total else total}/{total}] {key}", err=True)

        cells = run_bench(
            config,
            out,
            retry_failed=retry_failed,
            progress=progress,
            say=lambda m: click.echo(m, err=True),
            store=store,
        )
    if record:
        record_measurements(store, [c for c in cells if c.get("wall_s") is not None])
    click.echo(render(out))
    click.echo(f"\nreport: {out / 'report.html'}")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@fail_cleanly
def report(folder: Path) -> None:
    """Render FOLDER's saved bench results again (report.html, results.json, cells.csv)."""
    from slmkit.bench.report import render

    click.echo(render(folder))
    click.echo(f"\nreport: {folder / 'report.html'}")


@cli.command()
@click.option("--task", required=True, help="A built-in task or a labelled JSONL file.")
@click.option("--ram-gb", type=click.FloatRange(min=0.05), help="Memory budget (default: free).")
@click.option("--min-items-per-s", type=click.FloatRange(min=0), help="Throughput target.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0), help="Latency target per item.")
@click.option(
    "--results",
    "dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Bench folders to read besides the store's measurement log.",
)
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def recommend(
    task: str, ram_gb: float | None, dirs: tuple[Path, ...], as_json: bool, **targets: Any
) -> None:
    """Which model to use for TASK within a RAM budget (and speed target), from measured
    results where there are any and catalog estimates otherwise."""
    from slmkit.bench.recommend import candidates, reason
    from slmkit.catalog.memory import available_ram_bytes
    from slmkit.evaluate.runner import task_spec

    if task != "extract_sms":
        task_spec(task)
    if ram_gb is None:
        ram_gb = round((available_ram_bytes() or 0) / 2**30, 1)
    ranked = candidates(task, ram_gb, store=open_store(), dirs=dirs, **targets)
    text = reason(task, ram_gb, ranked)
    if as_json:
        rows = [
            {
                "model": c.entry.id,
                "score": c.score,
                "need_mb": c.need_mb,
                "need_source": c.need_source,
                "measured": c.cell is not None,
                "excluded": c.excluded,
            }
            for c in ranked
        ]
        pick = ranked[0].entry.id if ranked and not ranked[0].excluded else None
        click.echo(
            json.dumps(
                {"task": task, "ram_gb": ram_gb, "pick": pick, "reason": text, "candidates": rows}
            )
        )
        return
    click.echo(text)
