"""`slm data`: the built-in datasets, pulled into the store like models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, human, pull_progress


@cli.group()
def data() -> None:
    """Built-in datasets (sst2, sms_spam, banking77, cnn_dailymail, qmsum, ...): list, pull,
    inspect, remove. Your own JSONL/CSV files need none of this."""


def _store() -> Any:
    from slmkit.catalog.data_store import DataStore

    return DataStore()


def _row(entry: Any, manifest: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "name": entry.name,
        "installed": manifest is not None,
        "size_bytes": entry.size_bytes,
        "rows": {f.split: f.rows for f in entry.files},
        "license": entry.license,
        "tasks": list(entry.tasks),
        "source": manifest.get("source") if manifest else None,
    }


@data.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@fail_cleanly
def list_(as_json: bool) -> None:
    """Every catalog dataset: installed or not, size, rows per split, license."""
    from slmkit.catalog.datasets import DATASETS

    store = _store()
    rows = [_row(e, store.manifest(e.name)) for e in DATASETS]
    if as_json:
        click.echo(json.dumps({"data_dir": str(store.parent), "datasets": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "installed", "size", "rows", "license"):
        table.add_column(col, no_wrap=col != "rows")
    for r in rows:
        split_rows = ", ".join(f"{k} {v:,}" for k, v in r["rows"].items())
        table.add_row(
            r["name"], "yes" if r["installed"] else "-", human(r["size_bytes"]), split_rows,
            r["license"],
        )  # fmt: skip
    Console().print(table)
    click.echo(f"store: {store.parent}  (install one: slm data pull NAME [--from DIR])")


@data.command()
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "every", is_flag=True, help="Every dataset in the catalog.")
@click.option(
    "--from",
    "from_dir",
    type=click.Path(path_type=Path),
    help="A local copy (DIR/NAME/FILE, e.g. ../shared/data, or the dataset's own folder), "
    "checked against the catalog's sha256. Default: $SLMKIT_DATA_DIR, else the network.",
)
@click.option("--force", is_flag=True, help="Install again even if installed.")
@fail_cleanly
def pull(names: tuple[str, ...], every: bool, from_dir: Path | None, force: bool) -> None:
    """Install datasets into the store, every file verified (atomic: a failed or killed
    pull leaves nothing installed). Stops at the first that fails."""
    from slmkit.catalog.datasets import DATASETS, dataset

    if every == bool(names):
        from slmkit.errors import InputError

        raise InputError("give NAME... or --all (`slm data list` shows the names)")
    entries = list(DATASETS) if every else [dataset(n) for n in names]  # all checked first
    for entry in entries:
        _pull_one(entry, from_dir, force)


def _pull_one(entry: Any, from_dir: Path | None, force: bool) -> None:
    store, name = _store(), entry.name
    if store.manifest(name) is not None and not force:
        click.echo(f"{name} is already installed ({store.parent / name})")
        return
    click.echo(f"license: {entry.license} ({entry.license_note})")
    with pull_progress(f"pulling {name}") as progress:
        folder = store.pull(name, from_dir=from_dir, force=force, progress=progress)
    manifest = store.manifest(name) or {}
    click.echo(
        f"installed {name}: {len(entry.files)} file{'s' if len(entry.files) > 1 else ''}, "
        f"{human(entry.size_bytes)}, sha256 verified, from {manifest.get('source')} -> {folder}"
    )


@data.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@fail_cleanly
def info(name: str, as_json: bool) -> None:
    """Files, splits, sizes, sha256, license, citation and upstream sources of a dataset."""
    import dataclasses

    from slmkit.catalog.datasets import dataset

    entry = dataset(name)
    manifest = _store().manifest(name)
    out = {**dataclasses.asdict(entry), "installed": manifest}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{entry.name}: {entry.title}")
    click.echo(
        f"  installed:  {manifest['source'] if manifest else 'no (slm data pull ' + name + ')'}"
    )
    click.echo(f"  tasks:      {', '.join(entry.tasks) or '(read by path: slm eval FILE)'}")
    click.echo(f"  license:    {entry.license} ({entry.license_note})")
    click.echo(f"  citation:   {entry.citation}")
    click.echo(f"  splits:     {entry.splits}")
    for f in entry.files:
        click.echo(f"  {f.split:<10}  {f.name}  {f.rows:,} rows  {human(f.size_bytes)}  {f.sha256}")
    for u in entry.upstream:
        pin = f"  sha256 {u.sha256}" if u.sha256 else ""
        click.echo(f"  upstream:   github.com/{u.repo} @ {u.commit[:12]} {u.path}{pin}")


@data.command()
@click.argument("name")
@fail_cleanly
def rm(name: str) -> None:
    """Remove an installed dataset from the store."""
    if _store().remove(name):
        click.echo(f"removed {name}")
    else:
        click.echo(f"{name} is not installed")
