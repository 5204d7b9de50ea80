"""The `slm` command line. Heavy imports (llama_cpp, rich, gguf) happen inside commands."""

from __future__ import annotations

import contextlib
import functools
import json
import resource
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from slmkit.errors import SlmkitError

F = TypeVar("F", bound=Callable[..., Any])


def _fail_cleanly(fn: F) -> F:
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
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def _store() -> Any:
    from slmkit.catalog.store import Store

    return Store()


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return str(n)


@click.group()
@click.version_option(package_name="slmkit")
def cli() -> None:
    """slmkit: pick, run and measure small language models on a CPU, offline."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@_fail_cleanly
def models(as_json: bool) -> None:
    """List catalog models and what is installed, with sizes."""
    store = _store()
    rows = []
    for e in store.entries():
        m = store.manifest(e.id)
        rows.append(
            {
                "id": e.id,
                "family": e.family,
                "params": e.params,
                "quantization": e.quantization,
                "format": e.format,
                "license": e.license,
                "size_bytes": m["size_bytes"] if m else e.size_bytes,
                "installed": m is not None,
                "sources": [s.kind for s in e.sources],
            }
        )
    if as_json:
        click.echo(json.dumps({"store": str(store.root), "models": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models (store: {store.root})")
    for col in ("id", "params", "quant", "size", "license", "sources", "installed"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(
            r["id"],
            f"{r['params'] / 1e6:.0f}M",
            r["quantization"],
            _human(r["size_bytes"]),
            r["license"],
            ",".join(r["sources"]),
            "yes" if r["installed"] else "-",
        )
    Console().print(table)


@cli.command()
@click.argument("model_id")
@click.option("--force", is_flag=True, help="Download again even if installed.")
@_fail_cleanly
def pull(model_id: str, force: bool) -> None:
    """Download a catalog model (or an embedder asset) into the store, verifying sha256."""
    from slmkit.catalog.assets import ASSETS, asset_dir

    store = _store()
    if model_id in ASSETS:
        click.echo(f"installed {model_id} at {asset_dir(store, ASSETS[model_id], pull=True)}")
        return
    store.get(model_id)
    if store.path(model_id) is not None and not force:
        click.echo(f"{model_id} is already installed at {store.path(model_id)}")
        return
    with pull_progress(f"pull {model_id}") as progress:
        path = store.pull(model_id, force=force, progress=progress)
    click.echo(f"installed {model_id} at {path}")


@cli.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--id", "model_id", help="Model id to use (default: from the file name).")
@_fail_cleanly
def import_(path: Path, model_id: str | None) -> None:
    """Add a local GGUF file to the store, reading its metadata."""
    store = _store()
    with pull_progress(f"import {path.name}") as progress:
        entry = store.import_file(path, model_id=model_id, progress=progress)
    click.echo(
        f"imported {entry.id}: {entry.family}, {entry.params / 1e6:.0f}M params, "
        f"{entry.quantization}, context {entry.context_length}, "
        f"chat template: {'yes' if entry.chat_template == 'gguf' else 'no'}"
    )


@cli.command()
@click.argument("model_id")
@click.option(
    "--n-ctx", type=click.IntRange(min=64), default=None, help="Context for the RAM estimate."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@_fail_cleanly
def info(model_id: str, n_ctx: int | None, as_json: bool) -> None:
    """Show a model's metadata and the RAM it needs at a given context."""
    from slmkit.catalog.store import estimate_ram_bytes

    store = _store()
    entry = store.get(model_id)
    ctx = n_ctx or min(store.settings.n_ctx, entry.context_length)
    m = store.manifest(model_id)
    data = entry.model_dump(mode="json", exclude={"imported"})
    data.update(
        installed=m is not None,
        path=str(store.path(model_id)) if m else None,
        n_ctx=ctx,
        ram_estimate_bytes=estimate_ram_bytes(entry, ctx),
    )
    if as_json:
        click.echo(json.dumps(data))
        return
    for key in (
        "id",
        "family",
        "params",
        "context_length",
        "license",
        "format",
        "quantization",
        "backend",
        "chat_template",
        "filename",
        "size_bytes",
        "sha256",
        "default_system_prompt",
        "installed",
        "path",
        "description",
    ):
        click.echo(f"{key:22} {data[key]}")
    click.echo(f"{'sources':22} " + "; ".join(_source_text(s) for s in entry.sources))
    click.echo(f"{'ram estimate':22} {_human(data['ram_estimate_bytes'])} at n_ctx={ctx}")


def _source_text(s: Any) -> str:
    if s.kind == "pypi":
        return f"pypi {s.parts[0].package}" + (
            f" (+{len(s.parts) - 1} parts)" if len(s.parts) > 1 else ""
        )
    if s.kind == "hf":
        return f"hf {s.repo}/{s.filename}"
    return f"local {s.path}"


def generation_options(fn: F) -> F:
    """The sampling flags shared by `run` and `chat` (validated by GenerationOptions)."""
    opts = [
        click.option("--temperature", type=float, default=None, help="0 = greedy."),
        click.option("--top-p", type=float, default=None),
        click.option("--top-k", type=int, default=None),
        click.option("--max-tokens", type=int, default=None),
        click.option("--seed", type=int, default=None),
        click.option("--stop", multiple=True, help="Stop string (repeatable)."),
        click.option("--system", default=None, help='System prompt ("" for none).'),
        click.option("--n-ctx", type=int, default=None, help="Context window to load with."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _options(kw: dict[str, Any], **extra: Any) -> Any:
    from slmkit.options import make_options

    picked = {
        k: kw[k]
        for k in ("temperature", "top_p", "top_k", "max_tokens", "seed")
        if kw.get(k) is not None
    }
    if kw.get("stop"):
        picked["stop"] = list(kw["stop"])
    return make_options(**picked, **extra)


@cli.command()
@click.argument("model_id")
@click.argument("prompt", required=False)
@generation_options
@click.option("--raw", is_flag=True, help="Complete the text as-is (no chat template).")
@click.option("--overflow", type=click.Choice(["error", "truncate"]), default="error")
@click.option("--stats/--no-stats", default=False, help="Print tokens/s and memory to stderr.")
@_fail_cleanly
def run(
    model_id: str, prompt: str | None, raw: bool, overflow: str, stats: bool, **kw: Any
) -> None:
    """Stream a reply to PROMPT (read from stdin when omitted)."""
    import slmkit

    if prompt is None:
        if sys.stdin.isatty():
            raise click.UsageError("give a PROMPT argument or pipe text on stdin")
        prompt = sys.stdin.read()
    opts = _options(kw, overflow=overflow)
    if not prompt.strip():
        raise slmkit.EmptyPromptError("the prompt is empty")
    model = slmkit.load(model_id, n_ctx=kw.get("n_ctx"), pull=False)
    if raw:
        chunks = model.stream(prompt, options=opts)
    else:
        chunks = model.stream(
            [{"role": "user", "content": prompt}], system=kw["system"], options=opts
        )
    final = _echo_stream(chunks)
    if final.dropped_tokens:
        click.echo(
            f"note: dropped {final.dropped_tokens} prompt tokens to fit the context", err=True
        )
    if stats:
        _echo_stats(final)


def _echo_stream(chunks: Iterator[Any]) -> Any:
    out = sys.stdout
    for c in chunks:
        if c.text:
            out.write(c.text)
            out.flush()
        if c.stats is not None:
            out.write("\n")
            return c.stats
    return None


def _echo_stats(s: Any) -> None:
    click.echo(
        f"[{s.prompt_tokens} prompt tokens in {s.prompt_s:.2f}s, {s.completion_tokens} tokens "
        f"at {s.tokens_per_s:.1f} tok/s, first token {s.ttft_s * 1000:.0f} ms, "
        f"peak RSS {peak_rss_mb():.0f} MB]",
        err=True,
    )


@cli.command()
@click.argument("model_id")
@generation_options
@_fail_cleanly
def chat(model_id: str, **kw: Any) -> None:
    """Interactive multi-turn chat. Commands: /reset, /system TEXT, /exit."""
    import slmkit

    opts = _options(kw, overflow="truncate")
    model = slmkit.load(model_id, n_ctx=kw.get("n_ctx"), pull=False)
    system: str | None = kw["system"]
    history: list[dict[str, str]] = []
    click.echo(
        f"chatting with {model.id} (context {model.n_ctx}); /reset, /system TEXT, /exit", err=True
    )
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            click.echo("", err=True)
            return
        cmd = line.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            return
        if cmd == "/reset":
            history = []
            click.echo("(history cleared)", err=True)
            continue
        if cmd.startswith("/system"):
            system = cmd.removeprefix("/system").strip()
            history = []
            click.echo(f"(system prompt set to {system!r}; history cleared)", err=True)
            continue
        history.append({"role": "user", "content": line})
        reply: list[str] = []
        stats = _echo_stream(_tee(model.stream(history, system=system, options=opts), reply))
        history.append({"role": "assistant", "content": "".join(reply)})
        if stats is not None and stats.dropped_tokens:
            click.echo(f"(dropped {stats.dropped_tokens} tokens of old turns to fit)", err=True)


def _tee(chunks: Iterator[Any], sink: list[str]) -> Iterator[Any]:
    for c in chunks:
        sink.append(c.text)
        yield c


@cli.command()
@click.option("--model", "model_id", default=None, help="Model to tour (default model if omitted).")
@_fail_cleanly
def demo(model_id: str | None) -> None:
    """A short tour: pull the default model, answer a question, stream a reply, show speed."""
    import slmkit

    model_id = model_id or slmkit.DEFAULT_MODEL
    store = _store()
    if store.path(model_id) is None:
        with pull_progress(f"pull {model_id}") as progress:
            store.pull(model_id, progress=progress)
    model = slmkit.load(model_id, pull=False)
    question = "What is the capital of France?"
    click.echo(f"Q: {question}")
    answer = model.chat(question, temperature=0, max_tokens=64)
    click.echo(f"A: {answer.text.strip()}\n")
    click.echo("Streaming: write a short poem about the sea.")
    s = _echo_stream(
        model.stream(
            [{"role": "user", "content": "Write a short poem about the sea."}],
            temperature=0.7,
            seed=1,
            max_tokens=160,
        )
    )
    click.echo(
        f"\n{model.id}: {s.completion_tokens} tokens at {s.tokens_per_s:.1f} tokens/s, "
        f"first token after {s.ttft_s * 1000:.0f} ms, peak memory {peak_rss_mb():.0f} MB"
    )


@cli.command()
@click.argument("model_id")
@_fail_cleanly
def rm(model_id: str) -> None:
    """Remove an installed model from the store."""
    if not _store().remove(model_id):
        raise SlmkitError(f"{model_id!r} is not installed")
    click.echo(f"removed {model_id}")


def main() -> None:
    """Entry point for the `slm` script."""
    import slmkit.cli_tasks  # noqa: F401  (registers the task commands)

    cli()
