"""`slm` commands for tasks: classify, train-classifier, summarize, extract, embed, eval."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from slmkit.cli import _fail_cleanly, cli
from slmkit.errors import SlmkitError


@contextmanager
def item_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over items on stderr (hidden when stderr is not a terminal)."""
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
        yield lambda n: bar.advance(task, n)


def _inputs(texts: tuple[str, ...], file: Path | None, field: str, on_error: str) -> list[str]:
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


def _file_opts(fn: Any) -> Any:
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


@cli.command()
@click.argument("texts", nargs=-1)
@_file_opts
@click.option(
    "--method",
    type=click.Choice(["zeroshot", "zeroshot-uncalibrated", "fewshot", "head"]),
    default="zeroshot",
    show_default=True,
)
@click.option("--labels", help="Comma-separated labels (zero-/few-shot).")
@click.option("--model", "model_id", default="smollm2-135m-instruct", show_default=True)
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
@_fail_cleanly
def classify(
    texts: tuple[str, ...],
    file: Path | None,
    text_field: str,
    on_error: str,
    method: str,
    labels: str | None,
    model_id: str,
    head_path: Path | None,
    examples: Path | None,
    instruction: str,
    template: str | None,
    fmt: str,
) -> None:
    """Classify texts; prints one JSON line (label + probability per label) per text."""
    batch = _inputs(texts, file, text_field, on_error)
    clf = _classifier(method, labels, model_id, head_path, examples, instruction, template)
    preds: list[Any] = []
    with item_progress("classify", len(batch)) as advance:
        for start in range(0, len(batch), 16):
            preds.extend(clf.predict(batch[start : start + 16]))
            advance(min(16, len(batch) - start))
    if fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table("text", "label", "p")
        for t, p in zip(batch, preds, strict=True):
            table.add_row(t[:70], p.label, f"{p.probs[p.label]:.3f}")
        Console().print(table)
        return
    for t, p in zip(batch, preds, strict=True):
        click.echo(json.dumps({"text": t, "label": p.label, "probs": p.probs}))


def _classifier(
    method: str,
    labels: str | None,
    model_id: str,
    head_path: Path | None,
    examples: Path | None,
    instruction: str,
    template: str | None = None,
) -> Any:
    from slmkit.tasks.classify import FewShotClassifier, HeadClassifier, LikelihoodClassifier
    from slmkit.tasks.embed import load_embedder

    if method == "head":
        if head_path is None:
            raise SlmkitError("method head needs --head PATH (from `slm train-classifier`)")
        return HeadClassifier.load(head_path, load_embedder)
    if not labels:
        raise SlmkitError("zero-/few-shot needs --labels a,b,...")
    import slmkit

    names = [x.strip() for x in labels.split(",")]
    model = slmkit.load(model_id)
    base = LikelihoodClassifier(
        model,
        names,
        instruction=instruction,
        template=template,
        calibrate=method != "zeroshot-uncalibrated",
    )
    if method != "fewshot":
        return base
    if examples is None:
        raise SlmkitError("few-shot needs --examples FILE (JSONL with text and label_text)")
    from slmkit.tasks.data import read_rows

    rows = read_rows(examples, required=("text", "label_text"), on_error="fail").rows
    return FewShotClassifier(
        base,
        [r["text"] for r in rows],
        [r["label_text"] for r in rows],
        load_embedder("minilm-int8"),
    )


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
@_fail_cleanly
def train_classifier(
    data: Path,
    out: Path,
    text_field: str,
    label_field: str,
    embedder: str,
    test_size: float,
    on_error: str,
    as_json: bool,
) -> None:
    """Train an embeddings + logistic-regression head; print held-out accuracy."""
    from sklearn.model_selection import train_test_split

    from slmkit.tasks.classify import HeadClassifier, check_labels
    from slmkit.tasks.data import read_rows
    from slmkit.tasks.embed import load_embedder

    res = read_rows(data, required=(text_field, label_field), on_error=on_error)  # type: ignore[arg-type]
    for lineno, problem in res.errors:
        click.echo(f"warning: {data}:{lineno}: {problem} (skipped)", err=True)
    texts = [str(r[text_field]) for r in res.rows]
    labels = [str(r[label_field]) for r in res.rows]
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
    report = {
        "accuracy_heldout": round(acc, 4),
        "train_n": len(tx),
        "heldout_n": len(ex),
        "labels": list(final.labels),
        "embedder": embedder,
        "out": str(out),
        "skipped_rows": len(res.errors),
    }
    click.echo(
        json.dumps(report)
        if as_json
        else f"held-out accuracy {acc:.4f} on {len(ex)} rows ({len(tx)} trained); "
        f"head trained on all {len(texts)} rows written to {out}"
    )


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--model", "model_id", default="smollm2-135m-instruct", show_default=True)
@click.option("--max-words", type=click.IntRange(min=5), default=60, show_default=True)
@click.option("--n-ctx", type=click.IntRange(min=256), default=None)
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def summarize(file: Path, model_id: str, max_words: int, n_ctx: int | None, as_json: bool) -> None:
    """Summarize a text file of any length (map-reduce when it exceeds the context)."""
    import slmkit
    from slmkit.tasks.summarize import Summarizer

    text = sys.stdin.read() if str(file) == "-" else _read_text(file)
    model = slmkit.load(model_id, n_ctx=n_ctx)
    summarizer = Summarizer(model, max_words=max_words)
    tick = None
    if sys.stderr.isatty():
        tick = lambda i, n: click.echo(f"\rchunk {i}/{n}", err=True, nl=i == n)  # noqa: E731
    res = summarizer(text, progress=tick)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "summary": res.summary,
                    "document_tokens": res.document_tokens,
                    "tokens_read": res.tokens_read,
                    "coverage": res.coverage,
                    "chunks": res.chunks,
                    "levels": res.levels,
                }
            )
        )
        return
    click.echo(res.summary)
    click.echo(
        f"[read {res.tokens_read}/{res.document_tokens} tokens in {res.chunks} chunk(s), "
        f"{res.levels} level(s)]",
        err=True,
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise SlmkitError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise SlmkitError(f"{path} is not UTF-8 text") from e


@cli.command()
@click.argument("texts", nargs=-1)
@_file_opts
@click.option(
    "--schema",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="JSON Schema file (top-level object).",
)
@click.option("--model", "model_id", default="qwen2.5-coder-0.5b-instruct", show_default=True)
@_fail_cleanly
def extract(
    texts: tuple[str, ...],
    file: Path | None,
    text_field: str,
    on_error: str,
    schema: Path,
    model_id: str,
) -> None:
    """Extract JSON matching --schema from each text (one JSON line per text)."""
    import slmkit
    from slmkit.tasks.extract import Extractor

    try:
        schema_obj = json.loads(_read_text(schema))
    except json.JSONDecodeError as e:
        raise SlmkitError(f"{schema} is not JSON: {e.msg} (line {e.lineno})") from e
    from slmkit.tasks.extract import schema_of

    schema_of(schema_obj)  # fail before loading a model
    batch = _inputs(texts, file, text_field, on_error)
    ex = Extractor(slmkit.load(model_id), schema_obj)
    with item_progress("extract", len(batch)) as advance:
        for t in batch:
            click.echo(json.dumps(ex(t).data))
            advance(1)


@cli.command()
@click.argument("texts", nargs=-1)
@_file_opts
@click.option(
    "--model",
    "model_id",
    default="minilm-int8",
    show_default=True,
    type=click.Choice(["minilm-int8", "minilm-fp32"]),
)
@_fail_cleanly
def embed(
    texts: tuple[str, ...], file: Path | None, text_field: str, on_error: str, model_id: str
) -> None:
    """Print one JSON line {"text", "embedding"} per text (384-d, L2-normalised)."""
    from slmkit.tasks.embed import load_embedder

    batch = _inputs(texts, file, text_field, on_error)
    vecs = load_embedder(model_id).embed(batch)
    for t, v in zip(batch, vecs, strict=True):
        click.echo(json.dumps({"text": t, "embedding": [round(float(x), 6) for x in v]}))


@cli.command(name="eval")
@click.argument("task")
@click.option("--model", "model_id", default=None, help="Model id (not needed for --method head).")
@click.option(
    "--method",
    default="zeroshot",
    show_default=True,
    type=click.Choice(["zeroshot", "zeroshot-uncalibrated", "fewshot", "head"]),
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N items."
)
@click.option(
    "--train-limit",
    type=click.IntRange(min=1),
    default=20000,
    show_default=True,
    help="Training rows for head / example pool for few-shot.",
)
@click.option(
    "--embedder",
    default="minilm-int8",
    show_default=True,
    help="minilm-int8, minilm-fp32, or slm:MODEL_ID (a language model's own hidden states).",
)
@click.option("--n-ctx", type=click.IntRange(min=256), default=None)
@click.option("--max-words", type=click.IntRange(min=5), default=60, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@_fail_cleanly
def eval_(
    task: str,
    model_id: str | None,
    method: str,
    limit: int | None,
    train_limit: int,
    embedder: str,
    n_ctx: int | None,
    max_words: int,
    as_json: bool,
) -> None:
    """Evaluate TASK (sst2, sms_spam, banking77, cnn_dailymail, qmsum, extract_sms, or a JSONL
    file of the same shape): quality, latency p50/p95, items/s and peak RSS."""
    from slmkit.evaluate.runner import evaluate

    with item_progress(f"eval {task}", limit or 0) as advance:
        result = evaluate(
            task,
            model=model_id,
            method=method,
            limit=limit,
            train_limit=train_limit,
            n_ctx=n_ctx,
            max_words=max_words,
            embedder=embedder,
            progress=advance,
        )
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        if key == "confusion_matrix":
            click.echo("confusion_matrix (rows: gold, columns: predicted, order of labels):")
            for row in value:
                click.echo("  " + " ".join(f"{v:5d}" for v in row))
        else:
            click.echo(f"{key:22} {value}")


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default)."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--model", "models", multiple=True, help="Serve only these ids (default: all installed)."
)
@click.option("--api-key", "api_keys", multiple=True, help="Require `Authorization: Bearer KEY`.")
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with one API key per line.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="Sequences decoded together per model.",
)
@click.option(
    "--n-ctx",
    type=click.IntRange(min=512),
    default=8192,
    show_default=True,
    help="Cache cells shared by those sequences.",
)
@click.option(
    "--max-waiting",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Queued requests beyond the running ones; more get 429.",
)
@click.option(
    "--keep-alive",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds an idle model stays loaded.",
)
@click.option(
    "--memory-budget-mb",
    type=click.IntRange(min=64),
    default=None,
    help="Unload least recently used idle models to keep estimated RAM under this.",
)
@click.option("--log-prompts", is_flag=True, help="Log prompts and texts (off by default).")
@_fail_cleanly
def serve(
    host: str,
    port: int,
    models: tuple[str, ...],
    api_keys: tuple[str, ...],
    keys_file: Path | None,
    parallel: int,
    n_ctx: int,
    max_waiting: int,
    keep_alive: float,
    memory_budget_mb: int | None,
    log_prompts: bool,
) -> None:
    """Serve an OpenAI-compatible API (and a chat page at /) with continuous batching."""
    import uvicorn

    from slmkit.serve import ModelProvider, ServerSettings, create_app

    keys = list(api_keys)
    if keys_file is not None:
        keys += [k.strip() for k in _read_text(keys_file).splitlines() if k.strip()]
    settings = ServerSettings(host=host, port=port, api_keys=tuple(keys), log_prompts=log_prompts)
    provider = ModelProvider(
        n_seq=parallel,
        n_ctx=n_ctx,
        max_waiting=max_waiting,
        keep_alive_s=keep_alive,
        allowed=models,
        memory_budget_bytes=memory_budget_mb * 2**20 if memory_budget_mb else None,
    )
    if log_prompts:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(
        f"serving on http://{host}:{port} (models: {', '.join(provider.available())})", err=True
    )
    uvicorn.run(create_app(settings, provider), host=host, port=port, log_level="warning")
