"""The `slm` command group and what its command modules share (error handling, progress
bars, input reading). Heavy imports (llama_cpp, rich, gguf) happen inside commands."""

from __future__ import annotations

import contextlib
import functools
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from slmkit.errors import InputError, SlmkitError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from slmkit.catalog.store import Store
    from slmkit.tasks.registry import TaskSpec

F = TypeVar("F", bound=Callable[..., Any])


def fail_cleanly(fn: F) -> F:
    """Turn slmkit errors into one 'error:' line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SlmkitError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def peak_rss_mb() -> float:
    """This process's own peak resident set size in MiB (VmHWM: getrusage's figure carries
    the peak of whatever process started this one across fork and exec)."""
    from slmkit.catalog.memory import own_peak_rss_mb

    return own_peak_rss_mb()


@contextlib.contextmanager
def pull_progress(label: str) -> Iterator[Callable[[int], Callable[[int], None]]]:
    """A rich progress bar on stderr; yields a factory: total bytes -> advance(n)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:

        def start(total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total or None)
            return lambda n: bar.advance(task, n)

        yield start


def open_store() -> Store:
    from slmkit.catalog.store import Store

    return Store()


def human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return str(n)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`slm --version`: slmkit's version, the llama.cpp build and the backends found."""
    if not value or ctx.resilient_parsing:
        return
    import platform

    from slmkit.cli.version import backends_found, llama_recipe

    found = backends_found()
    click.echo(f"slmkit {_slmkit_version()}")
    click.echo(f"llama.cpp: {llama_recipe()}")
    click.echo(
        "backends: "
        + ", ".join(f"{k} ({'found' if v else 'not installed'})" for k, v in found.items())
    )
    click.echo(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    ctx.exit()


def _slmkit_version() -> str:
    from slmkit import __version__

    return __version__


class TaskGroup(click.Group):
    """The `slm` group: its own commands, plus one generated command for each registered task
    that has no hand-written one (tasks/registry.py), so a new task shows up in `slm --help`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_generated_tasks()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in _generated_tasks():
            from slmkit.tasks import registry

            return task_command(registry.get(cmd_name))
        return cmd


def _generated_tasks() -> list[str]:
    from slmkit.tasks import registry

    return [t.name for t in registry.all_tasks() if t.command is None]


class TaskName(click.ParamType):
    """A registered task's name, checked when the command runs (so tasks registered after
    import count) with the registry's did-you-mean error."""

    name = "task"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        from slmkit.tasks import registry

        return "{" + "|".join(registry.names()) + "}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from slmkit.tasks import registry

        try:
            return registry.get(str(value)).name
        except InputError as e:
            self.fail(str(e), param, ctx)


@click.group(cls=TaskGroup)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show slmkit's version, llama.cpp's build and the backends found, then exit.",
)
@click.option(
    "--online",
    is_flag=True,
    help="Lift the offline guard (on for every command but `pull`; or SLMKIT_OFFLINE=0).",
)
@click.pass_context
def cli(ctx: click.Context, online: bool) -> None:
    """slmkit: pick, run and measure small language models on a CPU, offline."""
    from slmkit import offline

    if online or not offline.wanted() or ctx.invoked_subcommand == "pull":
        offline.disable()
    else:
        offline.enable()


@contextlib.contextmanager
def item_progress(label: str, total: int) -> Iterator[Callable[..., None]]:
    """A rich progress bar over items on stderr (hidden when stderr is not a terminal).
    advance(n) moves it; advance(n, total) also sets a total learnt late (0: unknown)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=total or None)

        def advance(n: int, new_total: int | None = None) -> None:
            if new_total is not None:
                bar.update(task, total=new_total)
            bar.advance(task, n)

        yield advance


def inputs(texts: tuple[str, ...], file: Path | None, field: str, on_error: str) -> list[str]:
    """Texts from arguments, a JSONL/CSV file, or stdin lines; bad rows reported by line."""
    from slmkit.tasks.data import read_rows

    if file is not None:
        res = read_rows(file, required=(field,), on_error=on_error)  # type: ignore[arg-type]
        for lineno, problem in res.errors:
            click.echo(f"warning: {file}:{lineno}: {problem} (skipped)", err=True)
        return [str(r[field]) for r in res.rows]
    if texts:
        return list(texts)
    if sys.stdin.isatty():
        raise click.UsageError("give TEXT arguments, --file, or lines on stdin")
    return [ln for ln in sys.stdin.read().splitlines() if ln.strip()]


# `slm summarize` and `slm eval` (summarization tasks): map steps through an engine.
PARALLEL_OPTION = click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Summaries: chunks summarized at once in shared decode steps (1: one by one; "
    "no faster on 2 cores, docs/benchmarks.md).",
)


def options(opts: list[Callable[[F], F]]) -> Callable[[F], F]:
    """Apply a module-level list of click options (in the order listed in --help)."""

    def deco(fn: F) -> F:
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return deco


def file_opts(fn: Any) -> Any:
    fn = click.option(
        "--on-error",
        type=click.Choice(["skip", "fail"]),
        default="skip",
        help="Bad rows in --file: report and skip them, or stop and write nothing.",
    )(fn)
    fn = click.option("--text-field", default="text", show_default=True)(fn)
    fn = click.option(
        "--file",
        "file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="JSONL or CSV input.",
    )(fn)
    return fn


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text") from e


def _click_type(annotation: Any) -> tuple[Any, bool, bool]:
    """(click type, multiple, is_flag) for a pydantic field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _click_type(args[0])
    if origin is tuple:
        return args[0], True, False
    if origin is typing.Literal:
        return click.Choice([str(a) for a in args]), False, False
    if annotation is bool:
        return bool, False, True
    if annotation is Path:
        return click.Path(dir_okay=False, path_type=Path), False, False
    return annotation, False, False


def field_options(
    model: type[BaseModel], *, skip: tuple[str, ...] = (), env_prefix: str | None = None
) -> Callable[[F], F]:
    """One option per field of a pydantic model, defaulting to None (= not given), so a
    command's flags and the model it fills always agree."""

    def deco(fn: F) -> F:
        for name, field in reversed(model.model_fields.items()):
            if name in skip:
                continue
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            flag = "--" + str(extra.get("flag", name.replace("_", "-")))
            kind, multiple, is_flag = _click_type(field.annotation)
            env = f"env {env_prefix}{name.upper()}" if env_prefix else ""
            default = (
                "required"
                if field.is_required()
                else ("" if field.default in (None, ()) else f"default {field.default}")
            )
            notes = "; ".join(x for x in (env, default) if x)
            help_ = f"{field.description or ''} [{notes}]" if notes else field.description
            if is_flag:
                both = f"{flag}/--no-{flag[2:]}" if field.default is True else flag
                fn = click.option(both, name, is_flag=True, default=None, help=help_)(fn)
            else:
                fn = click.option(
                    flag, name, type=kind, multiple=multiple, default=None, help=help_
                )(fn)
        return fn

    return deco


def task_command(spec: TaskSpec) -> click.Command:
    """`slm NAME` for a registered task: texts from arguments, --file or stdin, one flag per
    field of its options, one JSON line per text ({"text", ...the task's fields})."""
    fields = ", ".join(spec.output)

    @click.command(
        name=spec.name, help=f"{spec.summary}\n\nPrints one JSON line per text: text, {fields}."
    )
    @click.argument("texts", nargs=-1)
    @file_opts
    @field_options(spec.options)
    @fail_cleanly
    def run(
        texts: tuple[str, ...], file: Path | None, text_field: str, on_error: str, **kw: Any
    ) -> None:
        import json

        fn = spec.make({k: v for k, v in kw.items() if v is not None})
        batch = inputs(texts, file, text_field, on_error)
        for text, row in zip(batch, fn(batch), strict=True):
            click.echo(json.dumps({"text": text, **row}))

    return run
