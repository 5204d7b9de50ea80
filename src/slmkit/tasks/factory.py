"""How each built-in task is built from its options: the code `slm batch` (locally and on Ray
workers), the generated routes and commands share through tasks/registry.py, so every path
gives the same results. Each builder returns a function from a list of texts to one
JSON-ready dict per text: classify {"label", "probs"}, summarize {"summary", ...}, extract
{"data"}, embed {"embedding"}, redact {"text", "entities"}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from slmkit.errors import InputError

if TYPE_CHECKING:
    from slmkit.tasks.classify import Classifier

TaskFn = Callable[[list[str]], list[dict[str, Any]]]


class TaskOptions(BaseModel):
    """What every task takes: the model (each task has its own default)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str | None = Field(
        None,
        description="The model (default: the task's own).",
        json_schema_extra={"flag": "model"},
    )


class ClassifyOptions(TaskOptions):
    method: Literal["zeroshot", "zeroshot-uncalibrated", "fewshot", "head", "finetuned"] = Field(
        "zeroshot", description="How to classify."
    )
    labels: str | None = Field(None, description="Comma-separated labels (zero-/few-shot).")
    head_path: Path | None = Field(
        None, description="A head from `slm train-classifier`.", json_schema_extra={"flag": "head"}
    )
    examples: Path | None = Field(None, description="Few-shot JSONL (text, label_text).")
    instruction: str = Field("Classify the text.", description="The question asked.")


class SummarizeOptions(TaskOptions):
    max_words: int = Field(60, ge=5, description="Length of the summary.")
    n_ctx: int | None = Field(None, ge=256, description="Context size of the model.")
    method: Literal["model", "extractive", "hybrid"] = Field(
        "model",
        description="The model writes it; extractive: sentences of the document; hybrid: the "
        "model rewrites the extractive pick.",
    )


class ExtractOptions(TaskOptions):
    schema_file: Path | None = Field(
        None, description="A JSON Schema object.", json_schema_extra={"flag": "schema"}
    )
    n_ctx: int | None = Field(None, ge=256, description="Context size of the model.")


class EmbedOptions(TaskOptions):
    pass


class RedactOptions(TaskOptions):
    kinds: str = Field(
        "email,phone,card,iban,ip",
        description="Comma-separated: email, phone, card, iban, ip, person.",
    )
    region: str = Field("US", description="Region for phone numbers.")


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


def classify_task(o: ClassifyOptions) -> TaskFn:
    clf = build_classifier(
        o.method,
        o.labels,
        o.model_id or "smollm2-135m-instruct",
        o.head_path,
        o.examples,
        o.instruction,
    )

    def classify(texts: list[str]) -> list[dict[str, Any]]:
        return [{"label": p.label, "probs": p.probs} for p in clf.predict(texts)]

    return classify


def embed_task(o: EmbedOptions) -> TaskFn:
    from slmkit.tasks.embed import load_embedder

    emb = load_embedder(o.model_id or "minilm-int8")
    return lambda texts: [{"embedding": [float(x) for x in v]} for v in emb.embed(texts)]


def summarize_task(o: SummarizeOptions) -> TaskFn:
    from slmkit.loading import load
    from slmkit.tasks.extractive import ExtractiveSummarizer, HybridSummarizer
    from slmkit.tasks.summarize import Summarizer

    summarizer: ExtractiveSummarizer | HybridSummarizer | Summarizer
    if o.method == "extractive":
        summarizer = ExtractiveSummarizer(max_words=o.max_words)
    else:
        model = load(o.model_id or "smollm2-135m-instruct", n_ctx=o.n_ctx)
        kind = HybridSummarizer if o.method == "hybrid" else Summarizer
        summarizer = kind(model, max_words=o.max_words)

    def summarize(texts: list[str]) -> list[dict[str, Any]]:
        out = []
        for t in texts:
            res = summarizer(t)
            out.append({"summary": res.summary, "coverage": res.coverage, "chunks": res.chunks})
        return out

    return summarize


def extract_task(o: ExtractOptions) -> TaskFn:
    from slmkit.loading import load
    from slmkit.tasks.extract import Extractor, schema_of

    if o.schema_file is None:
        raise InputError("extract needs --schema FILE (a JSON Schema object)")
    try:
        schema_obj = json.loads(Path(o.schema_file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read the schema {o.schema_file}: {e}") from e
    schema_of(schema_obj)  # fail before loading a model
    ex = Extractor(load(o.model_id or "qwen2.5-coder-0.5b-instruct", n_ctx=o.n_ctx), schema_obj)
    return lambda texts: [{"data": ex(t).data} for t in texts]


def redact_task(o: RedactOptions) -> TaskFn:
    from slmkit.tasks.redact import redact

    wanted = [k.strip() for k in o.kinds.split(",") if k.strip()]
    model = None
    if "person" in wanted:
        if not o.model_id:
            raise InputError("kind person needs --model (a chat model that finds the names)")
        from slmkit.loading import load

        model = load(o.model_id)

    def run(texts: list[str]) -> list[dict[str, Any]]:
        out = []
        for text in texts:
            r = redact(text, wanted, region=o.region, model=model)
            spans = [{"kind": x.kind, "start": x.start, "end": x.end} for x in r.spans]
            out.append({"text": r.text, "entities": spans})
        return out

    return run
