"""`slm eval TASK`: run one task + method on a dataset and collect the figures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.catalog.memory import own_peak_rss_mb
from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.evaluate import (
    SMS_SCHEMA,
    Progress,
    Timer,
    classification_metrics,
    ensure_positive,
    field_matches,
    rouge,
    sms_gold,
)
from slmkit.model import Model

if TYPE_CHECKING:
    from slmkit.tasks.finetuned import EncoderClassifier
from slmkit.tasks.data import (
    ClassificationTask,
    DataError,
    SummarizationTask,
    builtin_task,
    read_rows,
)

SUMMARY_BASELINES = ("extractive", "lead")  # summary methods that need no model


def load_model(model_id: str, n_ctx: int | None) -> Model:
    from slmkit.loading import load

    return load(model_id, n_ctx=n_ctx, pull=False)


def user_task(path: Path) -> ClassificationTask | SummarizationTask:
    """A user's JSONL in the shape of a task's labelled rows (tasks/registry.py: classify's
    text+label_text, summarize's document+summary)."""
    from slmkit.tasks import registry

    first = read_rows(path, required=(), on_error="fail").rows[0]
    spec = registry.for_rows(first)
    if spec is not None and spec.name == "summarize":
        return SummarizationTask(name=str(path), file=str(path))
    if spec is not None and spec.name == "classify":
        labels = sorted({r["label_text"] for r in read_rows(path, required=spec.rows).rows})
        return ClassificationTask(
            str(path), str(path), str(path), tuple(labels), "Classify the text."
        )
    shapes = [f"{'+'.join(t.rows)} ({t.name})" for t in registry.all_tasks() if t.rows]
    raise DataError(f"{path}: rows need {' or '.join(shapes)}")


def evaluate(
    task: str,
    *,
    model: str | None,
    method: str = "zeroshot",
    limit: int | None = None,
    train_limit: int | None = 20000,
    n_ctx: int | None = None,
    max_words: int = 60,
    embedder: str = "minilm-int8",
    k: int = 4,
    progress: Progress | None = None,
    prompt_lookup: int = 0,
    parallel: int = 1,
    lead_k: int | None = None,
) -> dict[str, Any]:
    """Evaluate and return one flat dict of figures (see docs/tasks.md). Summaries: method
    "extractive" or "lead" (`lead_k` sentences; default chosen on the training split) run
    without a model; a model's figures carry the lead-k baseline on the same rows."""
    ensure_positive("limit", limit)
    ensure_positive("train_limit", train_limit)
    t0 = time.perf_counter()
    if task == "extract_sms":
        result = _eval_extract(_need(model), limit, n_ctx, progress, prompt_lookup)
    else:
        spec = task_spec(task)
        if isinstance(spec, SummarizationTask) and method in SUMMARY_BASELINES:
            from slmkit.evaluate.summaries import eval_extractive

            result = eval_extractive(spec, method, limit, max_words, progress, lead_k)
        elif isinstance(spec, SummarizationTask):
            if method not in ("zeroshot", "hybrid"):
                raise InputError(
                    "summaries take --method zeroshot or hybrid (a model), "
                    f"{' or '.join(SUMMARY_BASELINES)}"
                )
            run = SummaryRun(limit, n_ctx, max_words, parallel, prompt_lookup, method == "hybrid")
            result = _eval_summarize(spec, _need(model), run, progress)
        else:
            result = _eval_classify(
                spec, model, method, limit, train_limit, n_ctx, embedder, k, progress
            )
    result.update(
        task=task,
        seconds=round(time.perf_counter() - t0, 2),
        peak_rss_mb=round(own_peak_rss_mb(), 1),
    )
    return result


def evaluate_mc_file(
    path: str,
    fmt: str,
    *,
    model: str | None,
    limit: int | None = None,
    n_ctx: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """`slm eval mc FILE --format F`: a multiple-choice benchmark by log-likelihood."""
    from slmkit.evaluate.mc import evaluate_mc, read_items

    ensure_positive("limit", limit)
    t0 = time.perf_counter()
    items = read_items(Path(path), fmt, limit)  # checked before the model loads
    with load_model(_need(model), n_ctx) as m:
        result: dict[str, Any] = {"task": f"mc:{fmt}", "file": path, "model": m.id}
        result.update(evaluate_mc(m, items, progress=progress))
    result.update(
        seconds=round(time.perf_counter() - t0, 2), peak_rss_mb=round(own_peak_rss_mb(), 1)
    )
    return result


def _need(model: str | None) -> str:
    """The model to evaluate: the one named, else the catalog's default."""
    from slmkit.catalog.builtin import DEFAULT_MODEL

    return model or DEFAULT_MODEL


def _eval_classify(
    spec: ClassificationTask,
    model_id: str | None,
    method: str,
    limit: int | None,
    train_limit: int | None,
    n_ctx: int | None,
    embedder_name: str,
    k: int,
    progress: Progress | None,
) -> dict[str, Any]:
    from slmkit.tasks.classify import METHODS, HeadClassifier, make_classifier
    from slmkit.tasks.embed import load_embedder
    from slmkit.tasks.finetuned import classifier_entry

    if model_id and classifier_entry(model_id, Store()):
        return _eval_finetuned(spec, model_id, limit, progress)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    texts, gold = spec.load("test", limit)
    out: dict[str, Any] = {"method": method, "n": len(texts)}
    timer = Timer()
    if method == "head":  # trained here on the task's train split (not read from a file)
        emb = load_embedder(embedder_name)
        tx, ty = spec.load("train", train_limit)
        t = time.perf_counter()
        head = HeadClassifier.fit(emb, tx, ty)
        out.update(model=embedder_name, train_n=len(tx), train_s=round(time.perf_counter() - t, 2))
        preds = timer.run(head.predict, texts, 64, progress)
    else:
        model = load_model(_need(model_id), n_ctx)
        examples = None
        if method == "fewshot":
            examples = spec.load("train", min(train_limit or 2000, 2000))
            out.update(shots=k, example_pool=len(examples[0]))
        clf = make_classifier(
            method,
            labels=spec.labels,
            model=model,
            examples=examples,
            embedder=embedder_name,
            instruction=spec.instruction,
            k=k,
        )
        out["model"] = model.id
        preds = timer.run(clf.predict, texts, 16, progress)
    out.update(classification_metrics(gold, [p.label for p in preds], spec.labels))
    out.update(timer.report(len(texts)))
    return out


def _eval_finetuned(
    spec: ClassificationTask, model_id: str, limit: int | None, progress: Progress | None
) -> dict[str, Any]:
    from slmkit.tasks.finetuned import load_classifier

    return eval_classifier(spec, load_classifier(model_id), limit, progress)


def eval_classifier(
    spec: ClassificationTask,
    clf: EncoderClassifier,
    limit: int | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A classifier made by `slm finetune` on a task's test split: its labels must be the task's."""
    clf.check_labels(spec.labels)
    texts, gold = spec.load("test", limit)
    out: dict[str, Any] = {"method": "finetuned", "model": clf.name, "n": len(texts)}
    timer = Timer()
    preds = timer.run(clf.predict, texts, 64, progress)
    out.update(classification_metrics(gold, [p.label for p in preds], spec.labels))
    out.update(timer.report(len(texts)))
    return out


@dataclass(frozen=True)
class SummaryRun:
    limit: int | None
    n_ctx: int | None
    max_words: int
    parallel: int  # chunks summarized at once on an engine (1: one by one)
    prompt_lookup: int = 0  # drafts copied from the text, one by one only
    hybrid: bool = False  # extractive selection, then the model rewrites it


def _eval_summarize(
    spec: SummarizationTask, model_id: str, run: SummaryRun, progress: Progress | None
) -> dict[str, Any]:
    from slmkit.tasks.extractive import HybridSummarizer
    from slmkit.tasks.summarize import summarizer_for

    docs, refs, skipped = spec.load_pairs(run.limit)
    model = load_model(model_id, run.n_ctx)
    timer = Timer()
    if run.hybrid:
        hybrid = HybridSummarizer(model, max_words=run.max_words)
        hybrid.extract.embedder  # noqa: B018 (loaded before the clock starts)
        results = timer.run(lambda batch: [hybrid(d) for d in batch], docs, 1, progress)
    else:
        with summarizer_for(
            model, max_words=run.max_words, parallel=run.parallel, prompt_lookup=run.prompt_lookup
        ) as summarizer:
            results = timer.run(lambda batch: [summarizer(d) for d in batch], docs, 1, progress)
    cover = [r.coverage for r in results]
    out: dict[str, Any] = {
        "model": model.id,
        "method": results[0].method,
        "n": len(docs),
        "skipped_summary_longer": skipped,
        "n_ctx": model.n_ctx,
        "max_words": run.max_words,
        "parallel": run.parallel,
        "prompt_lookup": run.prompt_lookup,
    }
    out.update(rouge([r.summary for r in results], refs))
    words = sum(len(r.summary.split()) for r in results)
    out["summary_words_mean"] = round(words / len(results), 1)
    out["reference_words_mean"] = round(sum(len(r.split()) for r in refs) / len(refs), 1)
    from slmkit.evaluate.summaries import lead_baseline

    out["lead_baseline"] = lead_baseline(spec, docs, refs)
    out.update(
        min_coverage=round(min(cover), 4),
        chunks_max=max(r.chunks for r in results),
        chunks_mean=round(sum(r.chunks for r in results) / len(results), 2),
        document_tokens_max=max(r.document_tokens for r in results),
        docs_over_4x_context=sum(r.document_tokens > 4 * model.n_ctx for r in results),
    )
    out.update(timer.report(len(docs)))
    return out


def _eval_extract(
    model_id: str,
    limit: int | None,
    n_ctx: int | None,
    progress: Progress | None,
    prompt_lookup: int = 0,
) -> dict[str, Any]:
    from slmkit.tasks.data import builtin_task as bt
    from slmkit.tasks.extract import Extractor

    spec = bt("sms_spam")
    assert isinstance(spec, ClassificationTask)
    texts, labels = spec.load("test", limit or 100)
    model = load_model(model_id, n_ctx)
    ex = Extractor(model, SMS_SCHEMA, prompt_lookup=prompt_lookup)
    timer = Timer()
    valid, fields = 0, {k: 0 for k in SMS_SCHEMA["properties"]}
    outputs = timer.run(lambda batch: [_try_extract(ex, t) for t in batch], texts, 1, progress)
    for data, text, label in zip(outputs, texts, labels, strict=True):
        if data is None:
            continue
        valid += 1
        for key, ok in field_matches(data, sms_gold(text, label)).items():
            fields[key] += ok
    n = len(texts)
    out: dict[str, Any] = {
        "model": model.id,
        "method": "grammar",
        "n": n,
        "schema_valid": round(valid / n, 4),
        "field_accuracy": {k: round(v / n, 4) for k, v in fields.items()},
        "schema": json.dumps(SMS_SCHEMA),
    }
    out.update(timer.report(n))
    return out


def _try_extract(ex: Any, text: str) -> dict[str, Any] | None:
    import jsonschema

    from slmkit.tasks.extract import ExtractionError

    try:
        data: dict[str, Any] = ex(text).data
        return data
    except (ExtractionError, jsonschema.ValidationError):
        return None


def evaluate_endpoint(
    endpoint: Any, task: str, limit: int | None, *, max_words: int = 60
) -> dict[str, Any]:
    """A task against an OpenAI-compatible endpoint (tasks.endpoint.Endpoint): the same
    data, metrics and timer as a local model; classification by asking for the label word."""
    from slmkit.tasks.endpoint import EndpointClassifier, endpoint_summary

    spec = task_spec(task)
    timer = Timer()
    out: dict[str, Any] = {"task": task, "model": endpoint.name, "method": "endpoint"}
    if isinstance(spec, SummarizationTask):
        docs, refs = spec.load(limit)
        summaries = timer.run(
            lambda b: [endpoint_summary(endpoint, d, max_words) for d in b], docs, 1
        )
        out.update(n=len(docs), **rouge(summaries, refs))
        out.update(timer.report(len(docs)))
        return out
    texts, gold = spec.load("test", limit)
    clf = EndpointClassifier(endpoint, spec.labels, spec.instruction)
    preds = timer.run(clf.predict, texts, 1)
    out.update(n=len(texts), **classification_metrics(gold, [p.label for p in preds], spec.labels))
    out.update(timer.report(len(texts)))
    return out


def task_spec(task: str) -> ClassificationTask | SummarizationTask:
    """A built-in task by name or a user's JSONL/CSV file of the same shape."""
    if task == "extract_sms":
        raise InputError("extract_sms runs on local models only (it needs a grammar)")
    if Path(task).suffix in (".jsonl", ".csv"):
        if not Path(task).is_file():
            raise InputError(f"task file {task} does not exist")
        return user_task(Path(task))
    return builtin_task(task)


def evaluate_cascade(
    task: str,
    models: str,
    *,
    tune_limit: int = 300,
    limit: int | None = None,
    target: float | None = None,
    compare: bool = False,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Calibrate a SMALL,LARGE cascade on the first `tune_limit` test rows, evaluate it on
    the rest (up to `limit`): accuracy, share escalated, mean latency; with `compare`,
    the large model alone on the same rows."""
    from slmkit.tasks.cascade import make_cascade, predict_all

    spec = task_spec(task)
    if not isinstance(spec, ClassificationTask):
        raise InputError(f"cascades classify; {task} is a summarization task")
    texts, gold = spec.load("test", None)
    if len(texts) <= tune_limit:
        raise InputError(f"{task} has {len(texts)} rows: fewer than --tune-limit {tune_limit} + 1")
    tune_x, tune_y = texts[:tune_limit], gold[:tune_limit]
    test_x, test_y = texts[tune_limit:], gold[tune_limit:]
    if limit:
        test_x, test_y = test_x[:limit], test_y[:limit]
    cascade = make_cascade(models, spec.labels, spec.instruction, timeout=timeout)
    choice = cascade.calibrate(tune_x, tune_y, target, progress)
    preds = predict_all(cascade, test_x, progress)
    n = len(test_x)
    out: dict[str, Any] = {
        "task": task,
        "cascade": models,
        "tuned_on": f"first {tune_limit} rows of the test split",
        "n": n,
        "temperature": round(cascade.temperature, 4),
        "threshold": round(choice.threshold, 6),
        "tune": {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(choice).items()},
        "accuracy": round(sum(p.label == g for p, g in zip(preds, test_y, strict=True)) / n, 4),
        "small_accuracy": round(
            sum(p.small_label == g for p, g in zip(preds, test_y, strict=True)) / n, 4
        ),
        "escalated": round(cascade.stats["escalated"] / n, 4),
        "mean_latency_ms": round(1000 * cascade.stats["seconds"] / n, 2),
    }
    if compare:
        t0 = time.perf_counter()
        large = predict_all(cascade.large, test_x, progress)
        out["large_accuracy"] = round(
            sum(p.label == g for p, g in zip(large, test_y, strict=True)) / n, 4
        )
        out["large_mean_latency_ms"] = round(1000 * (time.perf_counter() - t0) / n, 2)
    return out


def _sentiment_classifier(model_id: str, method: str, spec: Any) -> tuple[Any, str]:
    """A fine-tuned classifier by id, or a language model zero-shot on the task's labels."""
    from slmkit.tasks.classify import make_classifier
    from slmkit.tasks.finetuned import classifier_entry, load_classifier

    if classifier_entry(model_id, Store()):
        tuned = load_classifier(model_id)
        tuned.check_labels(spec.labels)
        return tuned, "finetuned"
    model = load_model(model_id, None)
    clf = make_classifier(method, labels=spec.labels, model=model, instruction=spec.instruction)
    return clf, method


def evaluate_bias(
    model_id: str | None,
    *,
    method: str = "zeroshot",
    task: str = "sst2",
    generator: bool = False,
    scorer: str | None = None,
) -> dict[str, Any]:
    """Counterfactual probes (evaluate/bias.py). Classifier probes: a classifier from
    `slm finetune`, or a language model zero-shot with the task's labels and question.
    `generator`: the model completes swapped sentence openings and `scorer` (default: the
    model itself, zero-shot) rates the sentiment of each sentence."""
    from slmkit.evaluate.bias import probe, probe_generator

    spec = task_spec(task)
    if not isinstance(spec, ClassificationTask) or "positive" not in spec.labels:
        raise InputError("bias probes need a sentiment task with a 'positive' label (sst2)")
    t0 = time.perf_counter()
    out: dict[str, Any] = {"task": "bias", "model": model_id, "target": "positive"}
    if generator:
        from slmkit.tasks.finetuned import classifier_entry

        if classifier_entry(_need(model_id), Store()):
            raise InputError(f"{model_id} is a fine-tuned classifier: it has no generator probes")
        gen = load_model(_need(model_id), None)
        clf, method = _sentiment_classifier(scorer or _need(model_id), method, spec)
        out.update(probe="generator", scorer=scorer or model_id, scorer_method=method)
        out["attributes"] = probe_generator(_completer(gen), _batched(clf), "positive")
    else:
        clf, method = _sentiment_classifier(_need(model_id), method, spec)
        out.update(probe="classifier", method=method)
        out["attributes"] = probe(_batched(clf), "positive")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _batched(clf: Any) -> Any:
    def predict(texts: list[str]) -> list[Any]:
        return [p for i in range(0, len(texts), 16) for p in clf.predict(texts[i : i + 16])]

    return predict


def _completer(model: Model) -> Any:
    """Greedy raw completions of sentence openings, up to the end of the sentence."""
    from slmkit.engine import generate_many

    def complete(openings: list[str]) -> list[str]:
        outs = generate_many(
            model, openings, n_seq=8, temperature=0.0, max_tokens=24, stop=[".", "\n"]
        )
        return [c.text.rstrip() + "." for c in outs]

    return complete
