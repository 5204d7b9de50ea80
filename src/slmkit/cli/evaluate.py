"""`slm eval`: quality, latency, items/s and memory of a model on a task."""

from __future__ import annotations

import json
from typing import Any

import click

from slmkit.cli.base import PARALLEL_OPTION, cli, fail_cleanly, item_progress, options

EVAL_CASCADE_OPTIONS: list[Any] = [
    click.option(
        "--cascade",
        "cascade_models",
        help="SMALL,LARGE: calibrate a cascade on the first --tune-limit test rows, "
        "measure the rest.",
    ),
    click.option("--tune-limit", type=click.IntRange(min=10), default=300, show_default=True),
    click.option("--target-accuracy", type=click.FloatRange(0, 1), help="Cascade target accuracy."),
    click.option("--compare", is_flag=True, help="Cascade: also run LARGE alone on the same rows."),
    click.option(
        "--prompt-lookup",
        type=click.IntRange(0, 32),
        default=0,
        help="extract_sms and summaries: draft up to N tokens copied from the input "
        "(prompt lookup; summaries one chunk at a time).",
    ),
    PARALLEL_OPTION,
    click.option(
        "--generator",
        is_flag=True,
        help="bias: probe MODEL as a generator (it completes openings; --scorer rates them).",
    ),
    click.option(
        "--scorer",
        default=None,
        help="bias --generator: sentiment classifier for the sentences (default: MODEL zero-shot).",
    ),
]


EVAL_OPTIONS = [
    click.option(
        "--model",
        "model_id",
        default=None,
        help="Model id (default: smollm2-135m-instruct; not needed for --method head).",
    ),
    click.option(
        "--method",
        default="zeroshot",
        show_default=True,
        type=click.Choice(
            ["zeroshot", "zeroshot-uncalibrated", "fewshot", "head", "hybrid", "extractive", "lead"]
        ),
        help="Classification: zeroshot, zeroshot-uncalibrated, fewshot or head. Summaries: "
        "zeroshot (the model), hybrid (the model rewrites the extractive summary's "
        "sentences), extractive or lead (no model).",
    ),
    click.option(
        "--lead-k",
        type=click.IntRange(1, 20),
        default=None,
        help="--method lead: sentences kept (default: chosen on the training split).",
    ),
    click.option(
        "--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N items."
    ),
    click.option(
        "--train-limit",
        type=click.IntRange(min=1),
        default=20000,
        show_default=True,
        help="Training rows for head / example pool for few-shot.",
    ),
    click.option(
        "--embedder",
        default="minilm-int8",
        show_default=True,
        help="minilm-int8, minilm-fp32, or slm:MODEL_ID (a language model's own hidden states).",
    ),
    click.option("--n-ctx", type=click.IntRange(min=256), default=None),
    click.option("--max-words", type=click.IntRange(min=5), default=60, show_default=True),
    click.option(
        "--kb-mode",
        type=click.Choice(["meeting", "all"]),
        default="meeting",
        show_default=True,
        help="qmsum_qa: one knowledge base per meeting, or one over all meetings.",
    ),
    click.option(
        "--retrieval-only", is_flag=True, help="qmsum_qa: retrieval figures only, no answers."
    ),
    click.option(
        "--excerpts",
        type=click.IntRange(1, 20),
        default=5,
        show_default=True,
        help="qmsum_qa: chunks retrieved per question (recall@k) and shown to the model.",
    ),
    click.option(
        "--answer-from",
        type=click.Choice(["kb", "whole", "none"]),
        default="kb",
        show_default=True,
        help="qmsum_qa: retrieved excerpts (kb), the whole meeting through the map-reduce "
        "summarizer with the question (whole), or the question alone (none).",
    ),
    click.option(
        "--rerank",
        is_flag=True,
        help="qmsum_qa: the model re-ranks 3x the excerpts by its log-likelihood (needs --model).",
    ),
    click.option(
        "--widen",
        type=click.IntRange(0, 5),
        default=0,
        show_default=True,
        help="qmsum_qa: each excerpt with N neighbouring chunks on either side.",
    ),
]


@cli.command(name="eval")
@click.argument("task")
@click.argument("file", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["arc", "hellaswag", "piqa"]),
    help="For `slm eval mc FILE`: the benchmark's JSONL layout and prompt.",
)
@options(EVAL_OPTIONS)
@options(EVAL_CASCADE_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@fail_cleanly
def eval_(
    task: str,
    file: str | None,
    fmt: str | None,
    model_id: str | None,
    limit: int | None,
    as_json: bool,
    **kw: Any,
) -> None:
    """Evaluate TASK (sst2, sms_spam, banking77, cnn_dailymail, qmsum, extract_sms, qmsum_qa, or
    a JSONL file of the same shape): quality, latency p50/p95, items/s and peak RSS.
    qmsum_qa: grounded answers from knowledge bases of the meetings (docs/kb.md).

    `slm eval mc FILE --format arc|hellaswag|piqa --model M`: a multiple-choice benchmark
    scored by log-likelihood as lm-evaluation-harness does (acc, acc_norm). `slm eval bias
    --model M [--generator [--scorer S]]`: bias probes. `--cascade SMALL,LARGE`: see
    docs/measure.md."""
    with item_progress(f"eval {task}", limit or 0) as advance:
        result = _run(task, file, fmt, model_id, limit, advance, kw)
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print(result)


def _run(
    task: str,
    file: str | None,
    fmt: str | None,
    model_id: str | None,
    limit: int | None,
    advance: Any,
    kw: dict[str, Any],
) -> dict[str, Any]:
    from slmkit.errors import InvalidOptionsError
    from slmkit.evaluate.runner import evaluate, evaluate_mc_file

    if (task == "mc") != bool(file):
        raise InvalidOptionsError("FILE goes with `slm eval mc FILE --format F` only")
    cascade = kw.pop("cascade_models")
    tune = {k: kw.pop(k) for k in ("tune_limit", "target_accuracy", "compare")}
    bias = {k: kw.pop(k) for k in ("generator", "scorer")}
    if task == "bias":
        from slmkit.evaluate.runner import evaluate_bias

        return evaluate_bias(model_id, method=kw["method"], **bias)
    if bias["generator"] or bias["scorer"]:
        raise InvalidOptionsError("--generator and --scorer go with `slm eval bias` only")
    if cascade:
        from slmkit.evaluate.runner import evaluate_cascade

        return evaluate_cascade(
            task,
            cascade,
            tune_limit=tune["tune_limit"],
            limit=limit,
            target=tune["target_accuracy"],
            compare=tune["compare"],
            progress=advance,
        )
    kbqa = {
        k: kw.pop(k)
        for k in ("kb_mode", "retrieval_only", "excerpts", "answer_from", "rerank", "widen")
    }
    if task == "qmsum_qa":
        return _qmsum_qa(model_id, limit, advance, kbqa, kw)
    if task != "mc":
        return evaluate(task, model=model_id, limit=limit, progress=advance, **kw)
    if not fmt or not file:
        raise InvalidOptionsError("slm eval mc needs --format arc, hellaswag or piqa")
    return evaluate_mc_file(
        file, fmt, model=model_id, limit=limit, n_ctx=kw["n_ctx"], progress=advance
    )


def _qmsum_qa(
    model_id: str | None, limit: int | None, advance: Any, kbqa: dict[str, Any], kw: dict[str, Any]
) -> dict[str, Any]:
    from slmkit.errors import InvalidOptionsError
    from slmkit.evaluate.kbqa import evaluate_qmsum_qa

    if kbqa["rerank"] and not model_id:
        raise InvalidOptionsError("--rerank needs --model (the model that re-ranks)")
    return evaluate_qmsum_qa(
        model=None if kbqa["retrieval_only"] else (model_id or _default_model()),
        kb_mode=kbqa["kb_mode"],
        k=kbqa["excerpts"],
        limit=limit,
        embedder=kw["embedder"],
        progress=advance,
        method=kbqa["answer_from"],
        n_ctx=kw["n_ctx"],
        rerank=model_id if kbqa["rerank"] else None,
        widen=kbqa["widen"],
    )


def _default_model() -> str:
    from slmkit.catalog.builtin import DEFAULT_MODEL

    return DEFAULT_MODEL


def _print(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if key == "confusion_matrix":
            click.echo("confusion_matrix (rows: gold, columns: predicted, order of labels):")
            for row in value:
                click.echo("  " + " ".join(f"{v:5d}" for v in row))
        else:
            click.echo(f"{key:22} {value}")
