"""Task commands: classify, train-classifier, summarize, extract, embed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from slmkit.cli.base import (
    PARALLEL_OPTION,
    cli,
    fail_cleanly,
    file_opts,
    inputs,
    item_progress,
    options,
    read_text,
)
from slmkit.errors import InputError

if TYPE_CHECKING:
    from slmkit.tasks.classify import Classifier


CASCADE_OPTIONS: list[Any] = [
    click.option(
        "--cascade",
        "cascade_models",
        help="SMALL,LARGE: answer with SMALL when sure, else ask LARGE (ids, classifiers, URLs).",
    ),
    click.option(
        "--threshold",
        type=click.FloatRange(0, 1),
        default=0.9,
        show_default=True,
        help="Cascade: SMALL's top probability needed to answer without LARGE.",
    ),
    click.option(
        "--calibrate",
        "calibrate_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Cascade: labelled JSONL (text, label_text) to fit SMALL's temperature and "
        "choose the threshold for --target-accuracy.",
    ),
    click.option(
        "--target-accuracy",
        "target",
        type=click.FloatRange(0, 1),
        help="Cascade: accuracy to reach on --calibrate (default: LARGE's less 0.01).",
    ),
]


@cli.command()
@click.argument("texts", nargs=-1)
@file_opts
@click.option(
    "--method",
    type=click.Choice(["zeroshot", "zeroshot-uncalibrated", "fewshot", "head", "finetuned"]),
    default="zeroshot",
    show_default=True,
    help="A --model made by `slm finetune` is used as it is, whatever the method.",
)
@click.option("--labels", help="Comma-separated labels (zero-/few-shot).")
@click.option(
    "--model",
    "model_id",
    default="smollm2-135m-instruct",
    show_default=True,
    help="A language model (zero-/few-shot) or a classifier from `slm finetune`.",
)
@click.option(
    "--head",
    "head_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Classifier head written by `slm train-classifier` (method head).",
)
@click.option(
    "--examples",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Labelled JSONL (text, label_text) for few-shot.",
)
@click.option("--instruction", default="Classify the text.", show_default=True)
@click.option(
    "--template",
    default=None,
    help="Prompt template with {text} (and optionally {labels}); overrides --instruction.",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "table"]), default="jsonl")
@options(CASCADE_OPTIONS)
@fail_cleanly
def classify(
    texts: tuple[str, ...], file: Path | None, text_field: str, on_error: str, fmt: str, **kw: Any
) -> None:
    """Classify texts; prints one JSON line (label + probability per label) per text."""
    batch = inputs(texts, file, text_field, on_error)
    casc = {k: kw.pop(k) for k in ("cascade_models", "threshold", "calibrate_file", "target")}
    if casc["cascade_models"]:
        _print_cascade(batch, _cascade(kw=kw, **casc))
        return
    clf = _classifier(**kw)
    preds: list[Any] = []
    with item_progress("classify", len(batch)) as advance:
        for start in range(0, len(batch), 16):
            preds.extend(clf.predict(batch[start : start + 16]))
            advance(min(16, len(batch) - start))
    if fmt == "table":
        _print_table(batch, preds)
        return
    for t, p in zip(batch, preds, strict=True):
        click.echo(json.dumps({"text": t, "label": p.label, "probs": p.probs}))


def _print_table(batch: list[str], preds: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("text", "label", "p")
    for t, p in zip(batch, preds, strict=True):
        table.add_row(t[:70], p.label, f"{p.probs[p.label]:.3f}")
    Console().print(table)


def _cascade(
    cascade_models: str,
    kw: dict[str, Any],
    threshold: float,
    calibrate_file: Path | None,
    target: float | None,
) -> Any:
    from slmkit.tasks.cascade import make_cascade

    if not kw["labels"]:
        raise InputError("a cascade needs --labels a,b,...")
    labels = [x.strip() for x in kw["labels"].split(",")]
    cascade = make_cascade(cascade_models, labels, kw["instruction"])
    cascade.threshold = threshold
    if calibrate_file is not None:
        from slmkit.tasks.data import read_rows

        rows = read_rows(calibrate_file, required=("text", "label_text"), on_error="fail").rows
        with item_progress("calibrate", 2 * len(rows)) as advance:
            choice = cascade.calibrate(
                [r["text"] for r in rows], [r["label_text"] for r in rows], target, advance
            )
        click.echo(
            json.dumps({"calibration": vars(choice), "temperature": cascade.temperature}), err=True
        )
    return cascade


def _print_cascade(batch: list[str], cascade: Any) -> None:
    preds: list[Any] = []
    with item_progress("cascade", len(batch)) as advance:
        for start in range(0, len(batch), 16):
            preds.extend(cascade.predict(batch[start : start + 16]))
            advance(min(16, len(batch) - start))
    for t, p in zip(batch, preds, strict=True):
        click.echo(
            json.dumps(
                {
                    "text": t,
                    "label": p.label,
                    "probs": p.probs,
                    "escalated": p.escalated,
                    "confidence": round(p.confidence, 4),
                }
            )
        )
    s = cascade.stats
    click.echo(
        f"escalated {s['escalated']}/{s['n']}, mean latency "
        f"{1000 * s['seconds'] / max(s['n'], 1):.1f} ms per text",
        err=True,
    )


def _classifier(**kw: Any) -> Classifier:
    from slmkit.tasks.factory import build_classifier

    return build_classifier(**kw)


@cli.command(name="train-classifier")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the head (JSON).",
)
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label_text", show_default=True)
@click.option(
    "--embedder",
    default="minilm-int8",
    show_default=True,
    help="minilm-int8, minilm-fp32, or slm:MODEL_ID (a language model's own hidden states).",
)
@click.option("--test-size", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True)
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip")
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def train_classifier(
    data: Path, out: Path, text_field: str, label_field: str, on_error: str, **kw: Any
) -> None:
    """Train an embeddings + logistic-regression head; print held-out accuracy."""
    from slmkit.tasks.data import read_rows

    res = read_rows(data, required=(text_field, label_field), on_error=on_error)  # type: ignore[arg-type]
    for lineno, problem in res.errors:
        click.echo(f"warning: {data}:{lineno}: {problem} (skipped)", err=True)
    texts = [str(r[text_field]) for r in res.rows]
    labels = [str(r[label_field]) for r in res.rows]
    report = _train_head(texts, labels, out, kw["embedder"], kw["test_size"])
    report["skipped_rows"] = len(res.errors)
    click.echo(
        json.dumps(report)
        if kw["as_json"]
        else f"held-out accuracy {report['accuracy_heldout']:.4f} on {report['heldout_n']} rows "
        f"({report['train_n']} trained); head trained on all {len(texts)} rows written to {out}"
    )


def _train_head(
    texts: list[str], labels: list[str], out: Path, embedder: str, test_size: float
) -> dict[str, Any]:
    """Fit on a stratified split to measure, then on every row to save."""
    from sklearn.model_selection import train_test_split

    from slmkit.tasks.classify import HeadClassifier, check_labels
    from slmkit.tasks.embed import load_embedder

    check_labels(sorted(set(labels)))
    stratify = labels if min(labels.count(lb) for lb in set(labels)) >= 2 else None
    tx, ex, ty, ey = train_test_split(
        texts, labels, test_size=test_size, random_state=0, stratify=stratify
    )
    emb = load_embedder(embedder)
    with item_progress("embed", len(tx)) as advance:
        head = HeadClassifier.fit(emb, tx, ty, progress=advance)
    preds = head.predict(ex)
    acc = sum(p.label == g for p, g in zip(preds, ey, strict=True)) / len(ey)
    final = HeadClassifier.fit(emb, texts, labels)  # the saved head uses every row
    final.save(out)
    return {
        "accuracy_heldout": round(acc, 4),
        "train_n": len(tx),
        "heldout_n": len(ex),
        "labels": list(final.labels),
        "embedder": embedder,
        "out": str(out),
    }


SUMMARIZE_OPTIONS = [
    click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path)),
    click.option("--model", "model_id", default="smollm2-135m-instruct", show_default=True),
    click.option(
        "--method",
        type=click.Choice(["model", "extractive", "hybrid"]),
        default="model",
        show_default=True,
        help="model: the model writes it (map-reduce past its context); extractive: central "
        "sentences of the document itself, no model (milliseconds per article); hybrid: the "
        "model rewrites the extractive pick of twice --max-words.",
    ),
    click.option("--max-words", type=click.IntRange(min=5), default=60, show_default=True),
    click.option("--n-ctx", type=click.IntRange(min=256), default=None),
    PARALLEL_OPTION,
    click.option("--json", "as_json", is_flag=True),
]


@cli.command()
@options(SUMMARIZE_OPTIONS)
@fail_cleanly
def summarize(
    file: Path,
    model_id: str,
    method: str,
    max_words: int,
    n_ctx: int | None,
    parallel: int,
    as_json: bool,
) -> None:
    """Summarize a text file of any length (map-reduce when it exceeds the context)."""
    text = sys.stdin.read() if str(file) == "-" else read_text(file)
    tick = None
    if sys.stderr.isatty():
        what = "sentences" if method == "extractive" else "chunk"
        tick = lambda i, n: click.echo(f"\r{what} {i}/{n}", err=True, nl=i == n)  # noqa: E731
    if method == "extractive":
        from slmkit.tasks.extractive import ExtractiveSummarizer

        res = ExtractiveSummarizer(max_words=max_words)(text, progress=tick)
    elif method == "hybrid":
        from slmkit.loading import load
        from slmkit.tasks.extractive import HybridSummarizer

        res = HybridSummarizer(load(model_id, n_ctx=n_ctx), max_words=max_words)(text, tick)
    else:
        from slmkit.loading import load
        from slmkit.tasks.summarize import summarizer_for

        model = load(model_id, n_ctx=n_ctx)
        with summarizer_for(model, max_words=max_words, parallel=parallel) as summarizer:
            res = summarizer(text, progress=tick)
    if as_json:
        click.echo(json.dumps(res.as_dict()))
        return
    click.echo(res.summary)
    if method == "extractive":
        click.echo(f"[{len(res.picked)} of {res.chunks} sentences]", err=True)
        return
    click.echo(
        f"[read {res.tokens_read}/{res.document_tokens} tokens in {res.chunks} chunk(s), "
        f"{res.levels} level(s)]",
        err=True,
    )


@cli.command()
@click.argument("texts", nargs=-1)
@file_opts
@click.option(
    "--schema",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="JSON Schema file (top-level object).",
)
@click.option("--model", "model_id", default="qwen2.5-coder-0.5b-instruct", show_default=True)
@fail_cleanly
def extract(
    texts: tuple[str, ...],
    file: Path | None,
    text_field: str,
    on_error: str,
    schema: Path,
    model_id: str,
) -> None:
    """Extract JSON matching --schema from each text (one JSON line per text)."""
    from slmkit.loading import load
    from slmkit.tasks.extract import Extractor

    try:
        schema_obj = json.loads(read_text(schema))
    except json.JSONDecodeError as e:
        raise InputError(f"{schema} is not JSON: {e.msg} (line {e.lineno})") from e
    from slmkit.tasks.extract import schema_of

    schema_of(schema_obj)  # fail before loading a model
    batch = inputs(texts, file, text_field, on_error)
    ex = Extractor(load(model_id), schema_obj)
    with item_progress("extract", len(batch)) as advance:
        for t in batch:
            click.echo(json.dumps(ex(t).data))
            advance(1)


@cli.command()
@click.argument("texts", nargs=-1)
@file_opts
@click.option(
    "--model",
    "model_id",
    default="minilm-int8",
    show_default=True,
    type=click.Choice(["minilm-int8", "minilm-fp32"]),
)
@fail_cleanly
def embed(
    texts: tuple[str, ...], file: Path | None, text_field: str, on_error: str, model_id: str
) -> None:
    """Print one JSON line {"text", "embedding"} per text (384-d, L2-normalised)."""
    from slmkit.tasks.embed import load_embedder

    batch = inputs(texts, file, text_field, on_error)
    vecs = load_embedder(model_id).embed(batch)
    for t, v in zip(batch, vecs, strict=True):
        click.echo(json.dumps({"text": t, "embedding": [round(float(x), 6) for x in v]}))


@cli.command(name="redact")
@click.argument("texts", nargs=-1)
@file_opts
@click.option(
    "--kinds",
    default="email,phone,card,iban,ip",
    show_default=True,
    help="Comma-separated: email, phone, card, iban, ip, person.",
)
@click.option("--region", default="US", show_default=True, help="Region for phone numbers.")
@click.option("--model", "model_id", help="A chat model to find person names (kind person).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per text with the spans.")
@fail_cleanly
def redact_cmd(
    texts: tuple[str, ...],
    file: Path | None,
    text_field: str,
    on_error: str,
    kinds: str,
    region: str,
    model_id: str | None,
    as_json: bool,
) -> None:
    """Replace personal data in texts by [EMAIL], [PHONE], [CARD], [IBAN], [IP], [PERSON]."""
    from slmkit.tasks.redact import redact

    wanted = [k.strip() for k in kinds.split(",") if k.strip()]
    model = None
    if "person" in wanted:
        if not model_id:
            raise InputError("kind person needs --model (a chat model that finds the names)")
        from slmkit.loading import load

        model = load(model_id)
    for text in inputs(texts, file, text_field, on_error):
        r = redact(text, wanted, region=region, model=model)
        if as_json:
            spans = [{"kind": s.kind, "start": s.start, "end": s.end} for s in r.spans]
            click.echo(json.dumps({"text": r.text, "entities": spans}))
        else:
            click.echo(r.text)
