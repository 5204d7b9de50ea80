"""Build a task from its command-line options: the code `slm classify/summarize/extract/embed`
and `slm batch` (locally and on Ray workers) share, so every path gives the same results.

`make_task(task, options)` returns a function from a list of texts to one JSON-ready dict per
text: classify {"label", "probs"}, summarize {"summary", ...}, extract {"data"}, embed
{"embedding"}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.errors import InputError

if TYPE_CHECKING:
    from slmkit.tasks.classify import Classifier

TASKS = ("classify", "summarize", "extract", "embed")
TaskFn = Callable[[list[str]], list[dict[str, Any]]]


def build_classifier(
    method: str = "zeroshot",
    labels: str | None = None,
    model_id: str = "smollm2-135m-instruct",
    head_path: Path | None = None,
    examples: Path | None = None,
    instruction: str = "Classify the text.",
    template: str | None = None,
) -> Classifier:
    """A classifier as `slm classify` builds it: a fine-tuned one by id, a head, or a
    language model zero-/few-shot over `labels` (comma-separated)."""
    from slmkit.catalog.store import Store
    from slmkit.tasks.classify import make_classifier
    from slmkit.tasks.finetuned import classifier_entry, load_classifier

    if method == "finetuned" or classifier_entry(model_id, Store()):
        fine = load_classifier(model_id)
        if labels:
            fine.check_labels([x.strip() for x in labels.split(",")])
        return fine
    if method == "head":
        if head_path is None:
            raise InputError("method head needs --head PATH (from `slm train-classifier`)")
        return make_classifier("head", head=head_path)
    if not labels:
        raise InputError("zero-/few-shot needs --labels a,b,...")
    shots = None
    if method == "fewshot":
        if examples is None:
            raise InputError("few-shot needs --examples FILE (JSONL with text and label_text)")
        from slmkit.tasks.data import read_rows

        rows = read_rows(examples, required=("text", "label_text"), on_error="fail").rows
        shots = ([r["text"] for r in rows], [r["label_text"] for r in rows])
    from slmkit.loading import load

    return make_classifier(
        method,
        labels=[x.strip() for x in labels.split(",")],
        model=load(model_id),
        examples=shots,
        instruction=instruction,
        template=template,
    )


def make_task(task: str, options: dict[str, Any]) -> TaskFn:
    """The task as a batch function; `options` are the task command's own (model_id,
    labels, method, schema, max_words, ...). Loads its model once."""
    if task == "classify":
        keys = ("method", "labels", "model_id", "head_path", "examples", "instruction")
        clf = build_classifier(**{k: options[k] for k in keys if options.get(k) is not None})

        def classify(texts: list[str]) -> list[dict[str, Any]]:
            return [{"label": p.label, "probs": p.probs} for p in clf.predict(texts)]

        return classify
    if task == "embed":
        from slmkit.tasks.embed import load_embedder

        emb = load_embedder(options.get("model_id") or "minilm-int8")
        return lambda texts: [{"embedding": [float(x) for x in v]} for v in emb.embed(texts)]
    if task == "summarize":
        return _summarize(options)
    if task == "extract":
        return _extract(options)
    raise InputError(f"unknown task {task!r}; one of {', '.join(TASKS)}")


def _summarize(options: dict[str, Any]) -> TaskFn:
    from slmkit.loading import load
    from slmkit.tasks.summarize import Summarizer

    model = load(options.get("model_id") or "smollm2-135m-instruct", n_ctx=options.get("n_ctx"))
    summarizer = Summarizer(model, max_words=options.get("max_words") or 60)

    def summarize(texts: list[str]) -> list[dict[str, Any]]:
        out = []
        for t in texts:
            res = summarizer(t)
            out.append({"summary": res.summary, "coverage": res.coverage, "chunks": res.chunks})
        return out

    return summarize


def _extract(options: dict[str, Any]) -> TaskFn:
    from slmkit.loading import load
    from slmkit.tasks.extract import Extractor, schema_of

    schema = options.get("schema")
    if schema is None:
        raise InputError("extract needs --schema FILE (a JSON Schema object)")
    try:
        schema_obj = json.loads(Path(schema).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read the schema {schema}: {e}") from e
    schema_of(schema_obj)  # fail before loading a model
    ex = Extractor(load(options.get("model_id") or "qwen2.5-coder-0.5b-instruct"), schema_obj)
    return lambda texts: [{"data": ex(t).data} for t in texts]
