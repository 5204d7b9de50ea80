"""`slm batch`: a task over a large file, locally or on Ray (slmkit.scale)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from slmkit import __version__
from slmkit.cli.base import TaskName, cli, fail_cleanly, item_progress, options

BATCH_OPTIONS: list[Any] = [
    click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        default=None,
        metavar="[ADDRESS]",
        help="Run on Ray: alone, a Ray started on this machine; with ADDRESS (ray://HOST:10001 "
        "or auto), that cluster. Needs `pip install 'slmkit[ray]'`.",
    ),
    click.option("--model", "model_id", default=None, help="As the task's own command."),
    click.option("--labels", help="classify: comma-separated labels (zero-/few-shot)."),
    click.option(
        "--method",
        type=click.Choice(
            [
                "zeroshot",
                "zeroshot-uncalibrated",
                "fewshot",
                "head",
                "finetuned",
                "model",
                "extractive",
                "hybrid",
            ]
        ),
        default=None,
        help="classify: as `slm classify` (default zeroshot); summarize: model (default), "
        "extractive or hybrid.",
    ),
    click.option("--head", "head_path", type=click.Path(dir_okay=False), help="classify head."),
    click.option("--instruction", default=None, help="classify: the question asked."),
    click.option("--examples", type=click.Path(dir_okay=False), help="classify: few-shot JSONL."),
    click.option(
        "--schema", "schema_file", type=click.Path(dir_okay=False), help="extract: JSON Schema."
    ),
    click.option("--max-words", type=click.IntRange(min=5), default=None, help="summarize."),
    click.option("--n-ctx", type=click.IntRange(min=256), default=None, help="summarize/extract."),
    click.option("--kinds", default=None, help="redact: comma-separated kinds, as `slm redact`."),
    click.option("--region", default=None, help="redact: region for phone numbers."),
    click.option(
        "-o",
        "--option",
        "extra",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any option of the task by its field name (tasks/registry.py), e.g. for a task "
        "without a flag here; repeatable.",
    ),
    click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True),
    click.option(
        "--cpus-per-worker", type=click.FloatRange(min=0.1), default=1.0, show_default=True
    ),
    click.option("--id-field", default="id", show_default=True, help="Row id (else row number)."),
    click.option("--text-field", default="text", show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
]


def task_options(task: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The flags given that are options of TASK, plus each -o KEY=VALUE; checked against the
    task's options model here, before any worker starts."""
    from slmkit.errors import InputError
    from slmkit.tasks import registry

    spec = registry.get(task)
    opts = {k: kw[k] for k in spec.options.model_fields if kw.get(k) is not None}
    for item in kw.get("extra") or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"-o takes KEY=VALUE, not {item!r}")
        opts[key.strip().replace("-", "_")] = value
    spec.parse(opts)
    return opts


@cli.command()
@click.argument("task", type=TaskName())
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@options(BATCH_OPTIONS)
@fail_cleanly
def batch(task: str, input_path: Path, output: Path, **kw: Any) -> None:
    """Run TASK over every row of INPUT (.jsonl, .csv or .parquet with a text field) into
    OUTPUT (.jsonl: one line per row, {"id", ...the task's fields}). A rerun skips the rows
    already written, so a stopped job resumes; `--ray` spreads it over Ray workers."""
    from slmkit.scale import BatchJob, run_batch

    opts = task_options(task, kw)
    job = BatchJob(
        task,
        input_path,
        output,
        opts,
        batch_size=kw["batch_size"],
        workers=kw["workers"],
        cpus_per_worker=kw["cpus_per_worker"],
        id_field=kw["id_field"],
        text_field=kw["text_field"],
    )
    with item_progress(f"batch {task}", 0) as advance:
        res = run_batch(job, kw["ray_address"], advance)
    if kw["as_json"]:
        click.echo(json.dumps(res))
        return
    click.echo(
        f"{res['rows_written']} rows written to {output} ({res['rows_already_done']} were "
        f"already there) in {res['seconds']} s on {res['ran_on']}"
        + (f", {res['items_per_s']} items/s" if res["items_per_s"] else "")
    )


@cli.group()
def deploy() -> None:
    """Write deployment manifests."""


@deploy.command()
@click.option("--model", "model_id", required=True, help="The model to serve and run jobs on.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--image",
    default=f"slmkit:{__version__}",
    show_default=True,
    help="A container image holding slmkit[ray] (`make image` builds this one from the "
    "Containerfile; the store is its /data/slmkit volume).",
)
@click.option("--name", default="slmkit", show_default=True)
@click.option("--task", type=TaskName(), help="Also a RayJob running `slm batch TASK`.")
@click.option("--input", "input_uri", default="/data/input.jsonl", show_default=True)
@click.option("--output", "output_uri", default="/data/output.jsonl", show_default=True)
@click.option("--labels", help="classify: comma-separated labels for the job.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--cpus-per-worker", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-replicas", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--n-ctx", type=click.IntRange(min=256), default=4096, show_default=True)
@fail_cleanly
def kuberay(model_id: str, out: Path, task: str | None, **kw: Any) -> None:
    """RayJob (rayjob.yaml: `slm batch TASK` on its own Ray cluster) and RayService
    (rayservice.yaml: `slm serve` on Ray Serve, autoscaling) manifests for KubeRay, with CPU
    and memory requests from the model's memory estimate. Apply with `kubectl apply -f`."""
    from slmkit.catalog.store import Store
    from slmkit.scale.kuberay import Deployment, rayjob, rayservice, write

    store = Store()
    d = Deployment(
        model_id,
        kw["image"],
        name=kw["name"],
        workers=kw["workers"],
        cpus_per_worker=kw["cpus_per_worker"],
        replicas=kw["replicas"],
        max_replicas=max(kw["max_replicas"], kw["replicas"]),
        n_ctx=kw["n_ctx"],
    )
    docs = {"rayservice.yaml": rayservice(d, store)}
    if task:
        extra = ["--labels", kw["labels"]] if kw["labels"] else []
        docs["rayjob.yaml"] = rayjob(d, store, task, kw["input_uri"], kw["output_uri"], extra)
    for path in write(out, docs):
        click.echo(f"wrote {path}")
