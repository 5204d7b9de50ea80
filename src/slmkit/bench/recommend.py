"""`slm recommend`: which model (and quantization) to use for a task within a RAM budget
and an optional speed target, from measured results where there are any (cells of
`slm bench` runs) and from catalog estimates otherwise, saying which.

Measured cells are read from the store's `measurements.jsonl` (every `slm bench` appends
its finished cells) and from any bench directories given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.memory import estimate_ram_bytes
from slmkit.catalog.store import Store

MEASUREMENTS = "measurements.jsonl"
GB = 2**30


def record_measurements(store: Store, cells: list[dict[str, Any]]) -> None:
    """Append finished cells to the store's log so `slm recommend` can cite them."""
    ok = [c for c in cells if c.get("status") == "ok" and c.get("kind") != "endpoint"]
    if not ok:
        return
    store.root.mkdir(parents=True, exist_ok=True)
    with (store.root / MEASUREMENTS).open("a") as fh:
        for c in ok:
            fh.write(json.dumps(c) + "\n")


def measured_cells(store: Store, dirs: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    from slmkit.bench import read_cells

    cells = []
    log = store.root / MEASUREMENTS
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                cells.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    for d in dirs:
        cells.extend(read_cells(d))
    return [c for c in cells if c.get("status") == "ok"]


@dataclass
class Candidate:
    entry: ModelEntry
    need_mb: float | None
    need_source: str  # "measured" or "estimate"
    cell: dict[str, Any] | None = None
    excluded: list[str] = field(default_factory=list)
    installed: bool = False

    @property
    def score(self) -> float | None:
        return float(self.cell["score"]) if self.cell else None


def _candidate(entry: ModelEntry, task: str, cells: list[dict[str, Any]], n_ctx: int) -> Candidate:
    mine = [c for c in cells if c["model"] == entry.id and c["task"] == task]
    # the full-machine profile if measured, else any; then the most items, then the latest
    mine.sort(key=lambda c: (c.get("threads") is None, c.get("n") or 0, c.get("started", "")))
    cell = mine[-1] if mine else None
    if cell and cell.get("peak_rss_mb"):
        return Candidate(entry, float(cell["peak_rss_mb"]), "measured", cell)
    need = estimate_ram_bytes(entry, n_ctx)
    return Candidate(entry, need / 2**20 if need else None, "estimate", cell)


def _check(
    c: Candidate, ram_gb: float, min_items_per_s: float | None, max_latency_ms: float | None
) -> None:
    if c.need_mb is None or c.need_mb > ram_gb * 1024:
        c.excluded.append(f"needs {c.need_mb or 0:.0f} MB ({c.need_source}), over {ram_gb:g} GB")
    if c.cell is None:
        return
    ips = c.cell.get("items_per_s") or 0.0
    lat = c.cell.get("latency_ms_p50") or 0.0
    if min_items_per_s and ips < min_items_per_s:
        c.excluded.append(f"{ips:.2f} items/s measured, under {min_items_per_s:g}")
    if max_latency_ms and lat > max_latency_ms:
        c.excluded.append(f"{lat:.0f} ms/item measured, over {max_latency_ms:g}")


def candidates(
    task: str,
    ram_gb: float,
    *,
    min_items_per_s: float | None = None,
    max_latency_ms: float | None = None,
    n_ctx: int = 2048,
    store: Store | None = None,
    dirs: tuple[Path, ...] = (),
) -> list[Candidate]:
    """Every installed or catalogued decoder and classifier, each with its fit checked;
    fitting measured ones first (best score, then fastest), then estimates (largest first)."""
    store = store or Store()
    cells = measured_cells(store, dirs)
    out = []
    for entry in store.entries():
        if entry.kind == "encoder":
            continue
        c = _candidate(entry, task, cells, n_ctx)
        if entry.kind == "classifier" and c.cell is None:
            continue  # a fine-tuned classifier counts only where measured on this task
        _check(c, ram_gb, min_items_per_s, max_latency_ms)
        c.installed = store.path(entry.id) is not None
        out.append(c)

    def rank(c: Candidate) -> tuple[int, int, float, float]:
        measured = c.cell is not None
        speed = float(c.cell.get("items_per_s") or 0) if c.cell else 0.0
        return (bool(c.excluded), not measured, -(c.score or 0.0), -(speed or c.entry.params or 0))

    return sorted(out, key=rank)


def reason(task: str, ram_gb: float, ranked: list[Candidate]) -> str:
    """One paragraph: the pick, its figures and where they come from, and what was passed over."""
    pick = ranked[0] if ranked and not ranked[0].excluded else None
    if pick is None:
        return f"No model fits {task} within {ram_gb:g} GB: " + "; ".join(
            f"{c.entry.id} {', '.join(c.excluded)}" for c in ranked[:4]
        )
    e = pick.entry
    head = f"Use {e.id} ({e.quantization or e.format}) for {task} within {ram_gb:g} GB."
    if pick.cell:
        c = pick.cell
        body = (
            f" Measured on this machine ({c.get('started', '')[:10]}, {c.get('n')} items): "
            f"{c.get('metric')} {c['score']:.1f} points, {_num(c.get('items_per_s'))} items/s, "
            f"p50 {_num(c.get('latency_ms_p50'))} ms per item, peak RSS {pick.need_mb:.0f} MB."
        )
    else:
        body = (
            f" Not measured on {task} yet: chosen by catalog estimate as the largest model "
            f"that fits ({(e.params or 0) / 1e6:.0f}M parameters, about {pick.need_mb:.0f} MB "
            f"at n_ctx 2048); run `slm bench --models {e.id} --tasks {task}` to measure it."
        )
    better = [c for c in ranked if c.excluded and c.score and c.score > (pick.score or 0)]
    passed = "".join(
        f" {c.entry.id} scored {c.score:.1f} but {'; '.join(c.excluded)}." for c in better[:2]
    )
    others = [c for c in ranked[1:] if not c.excluded and c.cell][:2]
    alt = "".join(
        f" {c.entry.id} fits too: {c.score:.1f} points at "
        f"{_num((c.cell or {}).get('items_per_s'))} items/s."
        for c in others
        if c.score is not None
    )
    pull = "" if pick.installed else f" Not installed yet: `slm pull {e.id}`."
    return head + body + passed + alt + pull


def _num(x: Any) -> str:
    return f"{float(x):.3g}" if x is not None else "?"
