"""Model commands: list, pull, import, inspect and remove models in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, human, open_store, pull_progress
from slmkit.errors import InputError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@fail_cleanly
def models(as_json: bool) -> None:
    """List catalog models and what is installed, with sizes."""
    store = open_store()
    store.clean_leftovers()
    rows: list[dict[str, Any]] = []
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
    extras = _installed_extras(store)
    if as_json:
        click.echo(json.dumps({"store": str(store.root), "models": rows, **extras}))
        return
    _print_models(rows, store.root)
    hints = {"assets": "slm pull minilm", "datasets": "slm data list"}
    for kind, names in extras.items():
        click.echo(f"{kind}: {', '.join(names) or f'(none installed: {hints[kind]})'}")


def _installed_extras(store: Any) -> dict[str, list[str]]:
    """What else the store holds: encoder/tokenizer assets and built-in datasets."""
    from slmkit.catalog.assets import ASSETS, installed
    from slmkit.catalog.data_store import DataStore

    assets = [f"{a.name} ({a.package})" for a in ASSETS.values() if installed(store, a)]
    datasets = sorted(DataStore(store.root, store.settings).installed())
    return {"assets": assets, "datasets": datasets}


def _short_params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _print_models(rows: list[dict[str, Any]], root: Path) -> None:
    """A table whose id column is never cut (users copy ids from it): in a narrow terminal
    the other columns shrink or go (sources first), the ids stay whole."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    width = max([len(r["id"]) for r in rows] + [2])
    table = Table(title=f"models (store: {root})", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=width)
    table.add_column("params", no_wrap=True, justify="right", min_width=6)
    table.add_column("quant", no_wrap=True, min_width=6)
    table.add_column("size", no_wrap=True, justify="right", min_width=8)
    table.add_column("license", no_wrap=True, overflow="ellipsis")
    wide = console.width >= width + 70
    if wide:
        table.add_column("sources", no_wrap=True, overflow="ellipsis")
    table.add_column("on disk", no_wrap=True)
    for r in rows:
        cells = [
            r["id"],
            _short_params(r["params"]),
            r["quantization"],
            human(r["size_bytes"]),
            r["license"],
        ]
        if wide:
            cells.append(",".join(r["sources"]))
        table.add_row(*cells, "yes" if r["installed"] else "-")
    console.print(table)


@cli.command()
@click.argument("model_id")
@click.option("--force", is_flag=True, help="Download again even if installed.")
@click.option(
    "--optimize",
    "then_optimize",
    is_flag=True,
    help="Then run `slm optimize` on it (its defaults) for this CPU's fastest kernels.",
)
@click.pass_context
@fail_cleanly
def pull(ctx: click.Context, model_id: str, force: bool, then_optimize: bool) -> None:
    """Download a catalog model (or an embedder asset) into the store, verifying sha256."""
    from slmkit.catalog.assets import ASSET_ALIASES, ASSETS, asset_dir

    store = open_store()
    asset = ASSETS.get(model_id) or ASSET_ALIASES.get(model_id)
    if asset is not None:
        click.echo(f"installed {model_id} at {asset_dir(store, asset, pull=True)}")
        return
    entry = store.get(model_id)
    if store.path(model_id) is not None and not force:
        click.echo(f"{model_id} is already installed at {store.path(model_id)}")
    else:
        from slmkit.catalog.entries import license_terms
        from slmkit.catalog.memory import available_ram_bytes, fit_message

        n_ctx = min(store.settings.n_ctx, entry.context_length)
        click.echo(f"license: {entry.license} ({license_terms(entry.license)})")
        click.echo(fit_message(entry, n_ctx, available_ram_bytes())[1], err=True)
        with pull_progress(f"pull {model_id}") as progress:
            path = store.pull(model_id, force=force, progress=progress)
        click.echo(f"installed {model_id} at {path}")
    if then_optimize:
        from slmkit.cli.optimize import optimize

        ctx.invoke(optimize, model_id=model_id)


@cli.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--id", "model_id", help="Model id to use (default: from the file name).")
@fail_cleanly
def import_(path: Path, model_id: str | None) -> None:
    """Add a local GGUF file to the store, reading its metadata."""
    store = open_store()
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
@fail_cleanly
def info(model_id: str, n_ctx: int | None, as_json: bool) -> None:
    """Show a model's metadata and the RAM it needs at a given context."""
    from slmkit.catalog.memory import estimate_ram_bytes

    store = open_store()
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
    click.echo(f"{'ram estimate':22} {human(data['ram_estimate_bytes'])} at n_ctx={ctx}")
    _print_extras(entry)


def _print_extras(entry: Any) -> None:
    """What only some models have: sampling defaults, kind, labels, lineage."""
    if entry.generation_defaults:
        shown = ", ".join(f"{k}={v:g}" for k, v in entry.generation_defaults.items())
        click.echo(f"{'sampling defaults':22} {shown} (the model card's; options you set win)")
    if entry.drafts:
        click.echo(f"{'draft models':22} {', '.join(entry.drafts)} (--draft auto)")
    if entry.kind != "decoder":
        click.echo(f"{'kind':22} {entry.kind}")
    if entry.labels:
        click.echo(f"{'labels':22} {', '.join(entry.labels)}")
    _print_weights(entry)
    if entry.lineage:
        lin = entry.lineage
        made = f"{lin.get('method')} from {lin.get('base')}"
        if lin.get("data"):
            made += f" on {lin['data']}"
        click.echo(f"{'made':22} {made} ({lin.get('date')})")
        metrics = lin.get("metrics") or {}
        kept = {k: v for k, v in metrics.items() if k.endswith("accuracy") or k == "train_s"}
        if kept:
            click.echo(f"{'metrics':22} " + ", ".join(f"{k} {v}" for k, v in kept.items()))


FOUR_BIT = ("Q4_", "IQ4", "Q3_", "Q2_")


def _print_weights(entry: Any) -> None:
    """Where the only weights there are come quantized, and which optimized file loads."""
    from slmkit.catalog.store import SOURCE_SUFFIX

    if (
        entry.format == "gguf"
        and not entry.imported
        and entry.quantization.upper().startswith(FOUR_BIT)
    ):
        click.echo(
            f"{'weights':22} only {entry.quantization} (4-bit) is available: any other "
            "format (slm quantize/optimize) is a requantization of it, measured against it"
        )
    store = open_store()
    chosen = store.preferred(entry.id)
    if chosen != entry.id:
        click.echo(
            f"{'optimized':22} loads {chosen} (slm optimize); {entry.id}{SOURCE_SUFFIX} "
            "loads this file"
        )
    if entry.runtime:
        shown = ", ".join(f"{k}={v}" for k, v in entry.runtime.items())
        click.echo(f"{'runtime':22} {shown} (measured by slm optimize; your settings win)")


def _source_text(s: Any) -> str:
    if s.kind == "pypi":
        return f"pypi {s.parts[0].package}" + (
            f" (+{len(s.parts) - 1} parts)" if len(s.parts) > 1 else ""
        )
    if s.kind == "hf":
        return f"hf {s.repo}/{s.filename}"
    return f"local {s.path}"


@cli.command()
@click.argument("model_id")
@fail_cleanly
def rm(model_id: str) -> None:
    """Remove an installed model from the store."""
    if not open_store().remove(model_id):
        raise InputError(f"{model_id!r} is not installed")
    click.echo(f"removed {model_id}")
