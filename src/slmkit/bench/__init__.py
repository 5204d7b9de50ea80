"""`slm bench`: a matrix of models x quantizations x tasks, one fresh process per cell.

Results go to `OUT/cells.jsonl` as each cell finishes (a run that stops resumes where it
stopped), with `OUT/config.json` and `OUT/machine.json`; `slmkit.bench.report` renders
them. A device profile (`threads`, `ram_gb`) pins each cell to that many cores (CPU
affinity and llama.cpp threads) and kills a cell whose resident memory passes the budget;
a model whose estimated need is over the budget is reported as not fitting without running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from slmkit.catalog.memory import estimate_ram_bytes
from slmkit.catalog.store import Store
from slmkit.errors import InputError

CELLS = "cells.jsonl"
DEFAULT_PRICE_CPU_HOUR = 0.04  # USD per vCPU-hour: a placeholder; pass the price you pay


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)
    quants: list[str] = []
    limit: int = Field(200, ge=1)
    repeat: int = Field(3, ge=1)
    n_ctx: int = Field(2048, ge=256)
    threads: int | None = Field(None, ge=1)
    ram_gb: float | None = Field(None, gt=0)
    price_cpu_hour: float = Field(DEFAULT_PRICE_CPU_HOUR, ge=0)
    timeout: float = Field(60.0, gt=0, description="seconds an endpoint may take per request")
    cell_timeout: float = Field(3600.0, gt=0)

    @property
    def profile(self) -> str:
        cores = (
            f"{self.threads} core{'s' if self.threads > 1 else ''}" if self.threads else "all cores"
        )
        ram = f"{self.ram_gb:g} GB" if self.ram_gb else "all RAM"
        return f"{cores}, {ram}"


def cell_key(model: str, task: str, profile: str) -> str:
    return f"{model} | {task} | {profile}"


def read_cells(out: Path) -> list[dict[str, Any]]:
    """Finished cells, the last record of each key winning (a torn last line is skipped)."""
    cells: dict[str, dict[str, Any]] = {}
    path = out / CELLS
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            cells[rec["key"]] = rec
    return list(cells.values())


# Bias probes as matrix tasks: "bias" probes the model as a sentiment classifier (zero-shot,
# or a fine-tuned classifier), "bias-gen" as a generator scored by itself (evaluate/bias.py).
BIAS_TASKS = ("bias", "bias-gen")
# grounded answers on qmsum_qa (evaluate/kbqa.py) -> (answer from, neighbouring chunks shown):
# retrieved excerpts, the same widened by 3 chunks on either side, the whole meeting through
# the map-reduce summarizer, the question alone
QA_TASKS = {
    "qmsum_qa": ("kb", 0),
    "qmsum_qa-wide": ("kb", 3),
    "qmsum_qa-whole": ("whole", 0),
    "qmsum_qa-none": ("none", 0),
}


def summary_method(model: str) -> tuple[str, int | None, str | None] | None:
    """(method, lead k, the model that writes) for a summary method benchmarked as if it were
    a model: "lead" (k chosen on the training split), "lead-3" (three sentences) and
    "extractive" run without a model (evaluate.runner.SUMMARY_BASELINES); "hybrid:MODEL" is
    MODEL rewriting the extractive pick (tasks/extractive.py)."""
    from slmkit.evaluate.runner import SUMMARY_BASELINES

    if model in SUMMARY_BASELINES:
        return model, None, None
    if model.startswith("hybrid:") and len(model) > 7:
        return "hybrid", None, model[7:]
    name, _, k = model.partition("-")
    return (name, int(k), None) if name == "lead" and k.isdigit() and int(k) > 0 else None


def check_tasks(tasks: list[str], models: list[str] | None = None) -> None:
    """Every task resolves (a known name, or a readable file with the needed fields) before
    any cell runs; the summary methods among `models` run summarization tasks only."""
    from slmkit.evaluate.runner import task_spec
    from slmkit.tasks.data import SummarizationTask

    methods = [m for m in models or () if summary_method(m)]
    for task in tasks:
        named = task in ("extract_sms", *BIAS_TASKS, *QA_TASKS)  # matrix tasks, not datasets
        summary = not named and isinstance(task_spec(task), SummarizationTask)
        if methods and not summary:
            raise InputError(f"{methods[0]} summarizes; {task} is not a summarization task")


def expand_models(config: BenchConfig, store: Store, say: Callable[[str], None]) -> list[str]:
    """Model ids (and endpoints) per quantization; missing quantized variants are made
    with `slm quantize` (no guard: the bench itself measures them)."""
    from slmkit.tasks.endpoint import is_endpoint

    out: list[str] = []
    for model in config.models:
        method = summary_method(model)
        if method and method[2]:
            store.require(method[2])
        if is_endpoint(model) or method:
            out.append(model)
            continue
        entry, _ = store.require(model)
        if not config.quants:
            out.append(model)
        for q in config.quants:
            if (entry.quantization or "").upper() == q.upper():
                out.append(model)
                continue
            variant = f"{model}-{q.lower().replace('_', '-')}"
            if store.path(variant) is None:
                from slmkit.compress import quantize

                say(f"quantizing {model} to {q} as {variant}")
                quantize(model, q.lower(), variant, store=store)
            out.append(variant)
    return out


def _describe(model: str, store: Store) -> dict[str, Any]:
    from slmkit.tasks.endpoint import is_endpoint

    if is_endpoint(model):
        return {"quant": "endpoint", "params": None, "size_bytes": None, "kind": "endpoint"}
    method = summary_method(model)
    if method and method[2]:
        return {**_describe(method[2], store), "kind": "method"}
    if method:
        return {"quant": "-", "params": None, "size_bytes": None, "kind": "method"}
    entry = store.get(model)
    return {
        "quant": entry.quantization or entry.format,
        "params": entry.params,
        "size_bytes": entry.size_bytes,
        "kind": entry.kind,
    }


def run_bench(
    config: BenchConfig,
    out: Path,
    *,
    retry_failed: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    say: Callable[[str], None] = lambda _: None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    store: Store | None = None,
) -> list[dict[str, Any]]:
    """Run every cell not already done in `out` (each new one also goes to `on_cell`);
    return all cells of this configuration."""
    from slmkit.bench.machine import machine_info

    store = store or Store()
    check_tasks(config.tasks, config.models)
    models = expand_models(config, store, say)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.model_dump_json(indent=2))
    (out / "machine.json").write_text(json.dumps(machine_info(), indent=2))
    done = {c["key"]: c for c in read_cells(out)}
    plan = [(m, t) for m in models for t in config.tasks]
    results = []
    for i, (model, task) in enumerate(plan):
        key = cell_key(model, task, config.profile)
        if progress:
            progress(key, i, len(plan))
        prev = done.get(key)
        if prev and (prev["status"] == "ok" or not retry_failed):
            results.append(prev)
            continue
        rec = run_cell(config, model, task, store, out)
        with (out / CELLS).open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        results.append(rec)
        if on_cell:
            on_cell(rec)
    if progress:
        progress("done", len(plan), len(plan))
    return results


def run_cell(config: BenchConfig, model: str, task: str, store: Store, out: Path) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "key": cell_key(model, task, config.profile),
        "model": model,
        "task": task,
        "profile": config.profile,
        "threads": config.threads,
        "ram_gb": config.ram_gb,
        **_describe(model, store),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    too_big = _does_not_fit(config, model, store)
    if too_big:
        rec.update(status="does_not_fit", error=too_big)
        return rec
    t0 = time.perf_counter()
    rec.update(run_child(config, model, task, out))
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    return finish(rec, config)


def _does_not_fit(config: BenchConfig, model: str, store: Store) -> str | None:
    from slmkit.tasks.endpoint import is_endpoint

    method = summary_method(model)
    if config.ram_gb is None or is_endpoint(model) or (method and not method[2]):
        return None
    need = estimate_ram_bytes(store.get(method[2] if method and method[2] else model), config.n_ctx)
    if need is not None and need > config.ram_gb * 2**30:
        return (
            f"needs about {need / 2**30:.2f} GB at n_ctx {config.n_ctx} (estimate), "
            f"over the profile's {config.ram_gb:g} GB"
        )
    return None


def run_child(config: BenchConfig, model: str, task: str, out: Path) -> dict[str, Any]:
    """The cell in a fresh process, watched: RSS over the budget or the cell timeout kills it."""
    from slmkit.tasks.endpoint import is_endpoint

    spec: dict[str, Any] = {
        "model": model,
        "task": task,
        "limit": config.limit,
        "repeat": config.repeat,
        "n_ctx": config.n_ctx,
        "timeout": config.timeout,
        "endpoint": is_endpoint(model),
    }
    env = dict(os.environ)
    if config.threads:
        spec["cpus"] = sorted(os.sched_getaffinity(0))[: config.threads]
        env["SLMKIT_N_THREADS"] = str(config.threads)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    n = len(list(logs.glob("cell*.out")))
    stdout, stderr = logs / f"cell{n:03d}.out", logs / f"cell{n:03d}.err"
    with stdout.open("w") as so, stderr.open("w") as se:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slmkit.bench.cell", json.dumps(spec)],
            stdout=so,
            stderr=se,
            env=env,
        )
        verdict = watch(proc, config)
    if verdict:
        return verdict
    lines = [ln for ln in stdout.read_text().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        from slmkit.runtime.native import describe_exit

        tail = stderr.read_text()[-400:].strip()
        return {"status": "failed", "error": f"{describe_exit(proc.returncode or 0)}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def watch(proc: subprocess.Popen[Any], config: BenchConfig) -> dict[str, Any] | None:
    """Poll until the process ends; kill it (and say why) past the memory or time budget."""
    from slmkit.catalog.memory import proc_status_mb

    limit_mb = config.ram_gb * 1024 if config.ram_gb else None
    t0 = time.monotonic()
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, proc_status_mb("VmRSS", proc.pid) or 0.0)
        why = None
        if limit_mb and peak > limit_mb:
            why = {
                "status": "does_not_fit",
                "error": f"resident memory reached {peak:.0f} MB, over the profile's "
                f"{config.ram_gb:g} GB: stopped",
            }
        elif time.monotonic() - t0 > config.cell_timeout:
            why = {"status": "failed", "error": f"cell ran past {config.cell_timeout:g} s"}
        if why:
            proc.kill()
            proc.wait()
            return why
        time.sleep(0.05)
    return None


def finish(rec: dict[str, Any], config: BenchConfig) -> dict[str, Any]:
    """Flatten the child's task figures into the record: score, items/s, latency, cost."""
    from slmkit.compress.measure import score_points

    task = rec.pop("task_result", None)
    if rec.get("status") != "ok" or task is None:
        return rec
    if "attributes" in task:  # bias probes: flip rates, not a score (lower is better)
        rec["metric"] = "flip_rate"
        rec["bias"] = {
            a: {k: v[k] for k in ("flip_rate", "flip_rate_ci95", "mean_abs_change")}
            for a, v in task["attributes"].items()
        }
        rec["task_detail"] = task
        return rec
    rec["metric"] = next((m for m in headline_scores() if m in task), "score")
    rec["score"] = round(score_points(task), 2)
    for k in ("n", "items_per_s", "latency_ms_p50", "latency_ms_p95", "macro_f1"):
        if k in task:
            rec[k] = task[k]
    threads = rec.get("n_threads")
    if threads and rec.get("items_per_s"):
        cpu_hours = threads * 1000 / rec["items_per_s"] / 3600
        rec["cost_per_1k"] = round(cpu_hours * config.price_cpu_hour, 5)
    rec["task_detail"] = {k: v for k, v in task.items() if k != "confusion_matrix"}
    return rec


def headline_scores() -> list[str]:
    """Each registered task's headline figure (tasks/registry.py), in registry order."""
    from slmkit.tasks import registry

    return [t.score for t in registry.all_tasks() if t.score]
