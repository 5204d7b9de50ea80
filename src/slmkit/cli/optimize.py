"""`slm optimize`: put a model on this CPU's fastest kernels within a quality bound."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, human, open_store


@contextlib.contextmanager
def stage_progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """One rich bar per measuring stage, on stderr (hidden when it is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeRemainingColumn as Eta

    console = Console(stderr=True)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Eta())
    with Progress(*cols, console=console, disable=not console.is_terminal) as bar:

        def stage(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield stage


def _ints(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r}: comma-separated whole numbers") from e
    if any(v < 1 for v in values):
        raise click.BadParameter("thread counts must be at least 1")
    return values


OPTIONS = (
    click.option(
        "--kld-max",
        type=float,
        default=0.02,
        show_default=True,
        help="Largest mean KL divergence from the source a candidate may have.",
    ),
    click.option(
        "--min-decode",
        type=float,
        default=0.95,
        show_default=True,
        help="Slowest decode a candidate may have, as a multiple of the source's.",
    ),
    click.option(
        "--guard",
        default="sst2",
        show_default=True,
        help="Task measured on source and candidates ('none' to skip).",
    ),
    click.option(
        "--max-drop",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        help="Largest guard-task drop in points.",
    ),
    click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=200,
        show_default=True,
        help="Guard task items.",
    ),
    click.option(
        "--kld-tokens",
        type=click.IntRange(min=1),
        default=20480,
        show_default=True,
        help="Positions scored for the KL divergence.",
    ),
    click.option(
        "--window",
        type=click.IntRange(min=16),
        default=512,
        show_default=True,
        help="Tokens per KLD window (the first quarter is context only).",
    ),
    click.option(
        "--prompt-tokens",
        type=click.IntRange(min=8),
        default=512,
        show_default=True,
        help="Prompt length the prefill speed is measured on.",
    ),
    click.option(
        "--min-speedup",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        help="A candidate must beat the source by this on prefill or decode.",
    ),
    click.option(
        "--candidates", help="Comma-separated recipes (default: all; see docs/models.md)."
    ),
    click.option("--threads", "threads_text", help="Thread counts to try (default: cores, half)."),
    click.option(
        "--repeats",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="Interleaved speed rounds (medians).",
    ),
    click.option(
        "--text",
        type=click.Path(dir_okay=False, path_type=Path),
        help="KLD text: a .txt, or .jsonl with a document/text field.",
    ),
    click.option(
        "--runtime-only",
        is_flag=True,
        help="Keep the source's file; register it with the flash attention / threads measured "
        "fastest (id MODEL-tuned), if that answers 5% (or --min-speedup) sooner than the defaults.",
    ),
    click.option("--out", help="Id to register the result under (default: MODEL-RECIPE)."),
    click.option("--force", is_flag=True, help="Replace a model of the same id."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
)


def with_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(OPTIONS):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("model_id")
@with_options
@fail_cleanly
def optimize(model_id: str, as_json: bool, threads_text: str | None, **kw: Any) -> None:
    """Build candidate formats of MODEL_ID (Q8_0, Q4_0, IQ4_NL, mixed), measure each on this
    CPU (prefill, decode, KL divergence against the source, a task guard), register the
    fastest within the bounds, and make `slm run/serve/eval MODEL_ID` load it
    (MODEL_ID@source loads the original). Nothing is registered if no candidate qualifies."""
    from slmkit.compress.optimize import OptimizeConfig
    from slmkit.compress.optimize import optimize as run
    from slmkit.errors import GuardRefusedError

    named = kw.pop("guard")
    guard = None if named.lower() == "none" else named
    recipes = kw.pop("candidates")
    cfg = OptimizeConfig(**kw, guard=guard, threads=_ints(threads_text), skip=kw["window"] // 4)
    if recipes:
        cfg.recipes = tuple(r.strip() for r in recipes.split(","))
    try:
        with stage_progress() as stage:
            res = run(model_id, cfg, store=open_store(), progress=stage)
    except GuardRefusedError as e:
        _show(e.report, None, as_json)
        raise
    _show(res.report, {"id": res.model_id, "source": res.source, "path": str(res.path)}, as_json)


def threads(n: int) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def _show(report: dict[str, Any], made: dict[str, str] | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**(made or {"id": None, "source": report["model"]}), **report}))
        return
    if report.get("note"):
        click.echo(f"note: {report['note']}", err=True)
    if report["candidates"]:
        _table(report)
    click.echo(f"rule: {report['rule']}")
    for r in report["candidates"]:
        if r.get("refused"):
            click.echo(f"  {r['candidate']}: {r['refused']}")
    runtime = report.get("runtime") or {}
    for t in runtime.get("trials", []):
        click.echo(
            f"  {'chosen file' if made else 'source'}, flash attention "
            f"{'on' if t['flash_attn'] else 'off'}, {threads(t['n_threads'])}: prefill "
            f"{t['prefill_tps']:.0f} t/s, decode {t['decode_tps']:.1f} t/s, {t['seconds']:.2f} s "
            "for the prompt and an answer"
        )
    if made:
        rt = runtime["chosen"]
        click.echo(
            f"registered {made['id']} ({made['path']}); flash attention "
            f"{'on' if rt['flash_attn'] else 'off'}, {threads(rt['n_threads'])}. "
            f"`slm run {report['model']}` loads it now; {made['source']} loads the original."
        )


def _table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    heads = (
        "candidate",
        "size",
        "prefill t/s",
        "decode t/s",
        "x prefill",
        "x decode",
        "KLD mean",
        "KLD p99",
        "top-1",
        "score",
        "verdict",
    )
    table = Table(*heads, title=f"{report['model']} on {report['cpu']}")
    for r in report["candidates"]:
        verdict = (
            "source" if r["candidate"] == "source" else ("chosen" if r.get("chosen") else "refused")
        )
        score = "-" if r.get("score") is None else f"{r['score']:.1f}"
        table.add_row(
            r["candidate"],
            human(r["size_bytes"]),
            f"{r['prefill_tps']:.0f}",
            f"{r['decode_tps']:.1f}",
            f"{r['prefill_x']:.2f}",
            f"{r['decode_x']:.2f}",
            f"{r['kld_mean']:.4f}",
            f"{r['kld_p99']:.3f}",
            f"{r['top1_agreement']:.3f}",
            score,
            verdict,
        )
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and pipes: one line per candidate
    console.print(table)
