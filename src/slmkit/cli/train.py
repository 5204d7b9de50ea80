"""`slm finetune`: its options are generated from FinetuneConfig's fields (torch is imported
only when a run starts)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, field_options
from slmkit.errors import InvalidOptionsError
from slmkit.train import FinetuneConfig, Progress


@contextlib.contextmanager
def train_progress() -> Iterator[tuple[Callable[[Progress], None], Callable[[int], None]]]:
    """A training bar (step, loss, rows/s, held-out accuracy) and a teacher-labelling bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeRemainingColumn as Eta

    console = Console(stderr=True)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Eta())
    with Progress(*cols, TextColumn("{task.fields[info]}"), console=console) as bar:
        tasks: dict[str, Any] = {}

        def step(p: Any) -> None:
            if "train" not in tasks:
                tasks["train"] = bar.add_task("train", total=p.total, completed=p.step, info="")
            acc = "" if p.held_accuracy is None else f" held-out acc {p.held_accuracy:.4f}"
            info = f"loss {p.loss:.4f} {p.rows_per_s:.0f} rows/s{acc}"
            bar.update(tasks["train"], completed=p.step, info=info)

        def label(n: int, what: str = "teacher labels") -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=None, info="")
            bar.advance(tasks[what], n)

        yield step, label


@cli.command()
@click.argument("data")
@field_options(FinetuneConfig, skip=("data",))
@click.option("--max-minutes", type=click.FloatRange(min=0.1), help="Stop training after this.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same --out.")
@click.option("--force", is_flag=True, help="Replace a model of the same id.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@fail_cleanly
def finetune(
    data: str, max_minutes: float | None, resume: bool, force: bool, as_json: bool, **given: Any
) -> None:
    """Fine-tune on DATA and register the result as --out.

    An encoder base (the default) becomes a classifier: DATA is a built-in classification task
    or a labelled JSONL/CSV; `--teacher MODEL` distils from a larger local SLM. A chat GGUF
    base (e.g. smollm2-135m-instruct) learns instruction/response rows (LoRA by default):
    DATA is extract_sms, a JSONL/CSV with prompt and response columns, or summaries (a
    built-in summary task's training split, or a file with document and summary columns,
    prompted as `slm summarize` prompts; --summary-input extract for --method hybrid); the
    result is an F16 GGUF that `slm run`, `slm summarize`, `slm eval` and the server use."""
    from pydantic import ValidationError

    from slmkit.train import finetune as run
    from slmkit.train import result_dict

    try:
        cfg = FinetuneConfig(data=data, **{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(f"--{x['loc'][0]}: {x['msg']}" for x in e.errors())
        raise InvalidOptionsError(problems) from e
    with train_progress() as (step, label):
        res = run(
            cfg,
            resume=resume,
            force=force,
            max_minutes=max_minutes,
            progress=step,
            label_progress=label,
        )
    if as_json:
        click.echo(json.dumps(result_dict(res)))
        return
    m = res.metrics
    click.echo(f"registered {res.model_id} ({res.path})")
    keys = ("held_accuracy", "held_token_accuracy", "test_accuracy", "steps", "stopped")
    for key in (*keys, "train_s", "rows_per_s"):
        if m.get(key) is not None:
            click.echo(f"  {key}: {m[key]}")


@cli.command()
@click.argument("model_id")
@click.option(
    "--type",
    "qtype",
    required=True,
    help="GGUF: q8_0, q5_k_m, q4_k_m, f16, ...; classifier: int8 (ONNX), onnx, int8-torch.",
)
@click.option("--out", required=True, help="Id to register the result under.")
@click.option("--guard", help="Task (built-in or file) measured on source and result.")
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Largest score drop (points) the guard accepts.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Guard task items."
)
@click.option("--allow-requantize", is_flag=True, help="Quantize an already-quantized GGUF.")
@click.option("--force", is_flag=True, help="Replace a model of the same id.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@fail_cleanly
def quantize(model_id: str, qtype: str, out: str, as_json: bool, **kw: Any) -> None:
    """Quantize MODEL_ID into a new store model; with --guard, refuse a result whose task
    score drops more than --max-drop points (nothing is registered then)."""
    from rich.console import Console

    from slmkit.compress import quantize as run
    from slmkit.errors import GuardRefusedError

    what = f"quantizing {model_id} to {qtype}" + (f", guard {kw['guard']}" if kw["guard"] else "")
    try:
        with Console(stderr=True).status(what):
            res = run(model_id, qtype.lower(), out, **kw)
    except GuardRefusedError as e:
        _show_report(e.report, as_json)
        raise
    _show_report(res.report, as_json)
    if not as_json:
        click.echo(f"registered {res.model_id} ({res.path})")


def _show_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.table import Table

    rows = [
        ("size MB", "size_bytes", 1e-6),
        ("load s", "load_s", 1),
        ("decode tokens/s", "decode_tokens_per_s", 1),
        ("items/s", "items_per_s", 1),
        ("peak RSS MB", "peak_rss_mb", 1),
        (f"score ({report.get('guard') or 'no guard'})", "score", 1),
    ]
    table = Table("", "source", "result")
    for name, key, scale in rows:
        vals = [report[side].get(key) for side in ("source", "result")]
        if all(v is None for v in vals):
            continue
        table.add_row(name, *("-" if v is None else f"{v * scale:.2f}" for v in vals))
    Console().print(table)
