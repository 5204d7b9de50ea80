"""Render a benchmark directory: `report.html` (self-contained, plots embedded as PNG),
`results.json` (machine, configuration, every cell), `cells.csv`, and a Markdown summary.

matplotlib draws the plots (Agg, no display); the HTML is a small template written here
because the report must be one file a person can mail or open offline.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmkit.bench import read_cells
from slmkit.errors import InputError

COLUMNS = (
    ("model", "model"),
    ("quant", "quant"),
    ("task", "task"),
    ("status", "status"),
    ("score", "score"),
    ("baseline", "baseline"),
    ("baseline_name", "baseline is"),
    ("metric", "metric"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("items_per_s", "items/s"),
    ("latency_ms_p50", "ms/item p50"),
    ("latency_ms_p95", "ms/item p95"),
    ("ttft_ms", "TTFT ms"),
    ("prefill_tps", "prefill tok/s"),
    ("decode_tps", "decode tok/s"),
    ("decode_range", "decode min-max"),
    ("load_s", "load s"),
    ("peak_rss_mb", "peak RSS MB"),
    ("cost_per_1k", "$ / 1k req"),
    ("profile", "profile"),
    ("error", "error"),
)


def flat(cell: dict[str, Any]) -> dict[str, Any]:
    """One row per cell: speed medians pulled up beside the task figures."""
    row = dict(cell)
    speed = cell.get("speed") or {}
    for src, dst in (
        ("ttft_ms", "ttft_ms"),
        ("prefill_tokens_per_s", "prefill_tps"),
        ("decode_tokens_per_s", "decode_tps"),
    ):
        if src in speed:
            row[dst] = speed[src]["median"]
    if "decode_tokens_per_s" in speed:
        row["decode_range"] = "{min:.4g}-{max:.4g}".format(**speed["decode_tokens_per_s"])
    detail = cell.get("task_detail") or {}
    if detail.get("majority_baseline") is not None:
        row["baseline"] = round(100 * detail["majority_baseline"], 2)
        row["baseline_name"] = "majority"
    lead = detail.get("lead_baseline")
    if lead:  # summaries: the first k sentences, on the same rows, in the same points
        row["baseline"] = round(100 * lead["rougeL"], 2)
        row["baseline_name"] = f"lead-{lead['k']}"
    for k in ("rouge1", "rouge2"):
        if detail.get(k) is not None:
            row[k] = round(100 * detail[k], 2)
    return row


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both latency (lower) and score (higher)."""
    front = []
    for i, (lat, score) in enumerate(points):
        beaten = any(
            (lat2 <= lat and s2 >= score) and (lat2 < lat or s2 > score)
            for j, (lat2, s2) in enumerate(points)
            if j != i
        )
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_accuracy_latency(rows: list[dict[str, Any]]) -> str | None:
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows if r.get("latency_ms_p50")})
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        pts = [r for r in rows if r["task"] == task and r.get("latency_ms_p50")]
        xy = [(float(r["latency_ms_p50"]), float(r["score"])) for r in pts]
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], color="#4878a8", zorder=3)
        for r, (x, y) in zip(pts, xy, strict=True):
            ax.annotate(
                f"{r['model']} ({r['quant']})",
                (x, y),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        front = pareto(xy)
        fx, fy = [xy[i][0] for i in front], [xy[i][1] for i in front]
        ax.plot(fx, fy, "--o", color="#c44e52", mfc="none", ms=11, label="Pareto front", zorder=2)
        base = pts[0].get("baseline")
        if base is not None:
            name = pts[0].get("baseline_name", "")
            ax.axhline(base, color="#999", lw=0.8, ls=":", label=f"{name} baseline")
        ax.set_xscale("log")
        ax.set_xlabel("latency per item, ms (p50, log scale)")
        ax.set_ylabel(f"{pts[0].get('metric', 'score')} (points)")
        ax.set_title(task)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _png(fig)


def _bars(labels: list[str], values: list[float], title: str, xlabel: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(labels) + 1.2))
    ax.barh(labels, values, color="#55a868")
    for y, v in enumerate(values):
        ax.annotate(f"{v:,.4g}", (v, y), fontsize=8, xytext=(3, -3), textcoords="offset points")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _per_model(rows: list[dict[str, Any]], key: str) -> tuple[list[str], list[float]]:
    """The highest value of `key` per model (a model's cells differ by task)."""
    best: dict[str, float] = {}
    for r in rows:
        if r.get(key) is not None:
            label = f"{r['model']} ({r['quant']})"
            best[label] = max(best.get(label, 0.0), float(r[key]))
    return list(best), list(best.values())


def plots(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each plot the results allow."""
    out = []
    acc = plot_accuracy_latency(rows)
    if acc:
        out.append(("Accuracy vs latency (Pareto front dashed)", acc))
    for key, title, unit in (
        ("peak_rss_mb", "Peak memory per model", "peak RSS, MB (highest over its tasks)"),
        ("decode_tps", "Decode speed per quantization", "decode tokens/s (median)"),
    ):
        labels, values = _per_model(rows, key)
        if labels:
            out.append((title, _bars(labels, values, title, unit)))
    costed = [r for r in rows if r.get("cost_per_1k") is not None]
    if costed:
        labels = [f"{r['model']} ({r['quant']}) / {r['task']}" for r in costed]
        values = [float(r["cost_per_1k"]) for r in costed]
        title = "Cost per 1,000 requests"
        out.append((title, _bars(labels, values, title, "USD (CPU-hours x price)")))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)


def bias_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the bias-probe table: flip rate in % with its 95 % interval, per
    attribute, for each bias cell."""
    cells = [r for r in rows if r.get("bias")]
    attrs = sorted({a for r in cells for a in r["bias"]})
    head = ["model", "probe", *(f"{a} flip %" for a in attrs)]
    body = []
    for r in cells:
        line = [f"{r['model']} ({r['quant']})", str(r["task"])]
        for a in attrs:
            b = r["bias"].get(a)
            if b is None:
                line.append("")
                continue
            lo, hi = b["flip_rate_ci95"]
            line.append(f"{100 * b['flip_rate']:.1f} [{100 * lo:.1f}-{100 * hi:.1f}]")
        body.append(line)
    return head, body


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if c[0] not in ("profile", "error", "metric")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in cols) + " |")
    head, body = bias_table(rows)
    if body:
        lines += ["", "Bias probes (flip rate between swapped variants, 95 % interval):", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    bad = [r for r in rows if r.get("status") != "ok"]
    lines += [f"\n- {r['key']}: {r['status']}: {r.get('error', '')}" for r in bad]
    return "\n".join(lines)


def _html(meta: dict[str, Any], rows: list[dict[str, Any]], figs: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k, _ in COLUMNS) + "</tr>"
        for r in rows
    )
    images = "".join(
        f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{b}">'
        for t, b in figs
    )
    bias_head, bias_rows = bias_table(rows)
    bias = ""
    if bias_rows:
        bias = (
            "<h2>Bias probes</h2><p>How often the prediction flips between two variants of a "
            "sentence that differ only in a name, gender, nationality or religion (percent, "
            "95 % bootstrap interval over templates; 0 is the goal). docs/trust.md says how "
            "they are built.</p><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in bias_head)
            + "</tr>"
            + "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
                for line in bias_rows
            )
            + "</table>"
        )
    machine = html.escape(json.dumps(meta.get("machine", {}), indent=2))
    config = html.escape(json.dumps(meta.get("config", {}), indent=2))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>slmkit bench report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px}}
th{{background:#eee}}img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em}}</style>
</head><body><h1>slmkit bench report</h1>
<p>Each cell ran in a fresh process; speed figures are medians of repeated runs; scores are
points (accuracy, mean field accuracy, or ROUGE-L x 100). The baseline is what a model must
beat on the same rows: the majority label's accuracy, or for summaries lead-k's ROUGE-L (the
first k sentences; k chosen on the dataset's training split).</p>
{images}{bias}<h2>All cells</h2><table><tr>{head}</tr>{body}</table>
<h2>Machine</h2><pre>{machine}</pre><h2>Configuration</h2><pre>{config}</pre>
</body></html>"""


def render(out: Path) -> str:
    """Write report.html, results.json and cells.csv in `out`; return the Markdown summary."""
    import matplotlib

    matplotlib.use("Agg")
    cells = read_cells(out)
    if not cells:
        raise InputError(f"{out} holds no benchmark results ({out / 'cells.jsonl'})")
    meta = {
        name: json.loads((out / f"{name}.json").read_text())
        for name in ("machine", "config")
        if (out / f"{name}.json").exists()
    }
    rows = [flat(c) for c in cells]
    (out / "results.json").write_text(json.dumps({**meta, "cells": cells}, indent=2))
    with (out / "cells.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([k for k, _ in COLUMNS])
        writer.writerows([[_fmt(r.get(k)) for k, _ in COLUMNS] for r in rows])
    ok = [r for r in rows if r.get("status") == "ok"]
    (out / "report.html").write_text(_html(meta, rows, plots(ok)))
    return markdown(rows)
