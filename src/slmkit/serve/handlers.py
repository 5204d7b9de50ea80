"""The blocking work behind the routes (run in worker threads): prompt preparation and
the task adapters. They call the same task code as the CLI."""

from __future__ import annotations

import logging
from typing import Any

from slmkit.errors import ContextOverflowError, InputError
from slmkit.options import GenerationOptions, make_options
from slmkit.runtime.base import TokenLogprob
from slmkit.serve.provider import Loaded, ModelProvider
from slmkit.serve.schemas import (
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    RedactRequest,
    ResponseFormat,
    SummarizeRequest,
)
from slmkit.settings import ServerSettings
from slmkit.tasks.classify import LikelihoodClassifier, Prediction
from slmkit.tasks.redact import Redaction
from slmkit.tasks.summarize import Summarizer, SummaryResult

log = logging.getLogger("slmkit.serve")


def redact_logs() -> None:
    """Put the redacting filter on the request log (once per process)."""
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())


EMBEDDERS = ("all-minilm-l6-v2", "minilm", "minilm-int8", "text-embedding-minilm")
MAX_CLASSIFIERS = 32  # calibrated classifiers kept per model


def prepare(
    provider: ModelProvider,
    settings: ServerSettings,
    body: ChatRequest | CompletionRequest,
    prompt: str | list[int] | None = None,
) -> tuple[Loaded, list[int], GenerationOptions]:
    """Validate, template and tokenize (this can load a model). `prompt`: which of a
    completion's prompts (default: its first)."""
    item = provider.get(body.model)
    model = item.model
    max_tokens = body.max_tokens or settings.default_max_tokens
    limit_ = settings.max_tokens_limit
    asked = (body.max_completion_tokens if isinstance(body, ChatRequest) else None) or max_tokens
    if limit_ and asked > limit_:
        raise InputError(f"max_tokens {asked} is over this server's limit {limit_}")
    if isinstance(body, ChatRequest):
        max_tokens = body.max_completion_tokens or max_tokens
        grammar = grammar_for_format(body.response_format)
        n_lp = (body.top_logprobs or 0) if body.logprobs else None
        msgs = [{"role": m.role, "content": m.content} for m in body.messages]
        tokens = model.backend.tokenize(model.format_chat(msgs))
        shown: object = body.messages
    else:
        grammar, n_lp = None, body.logprobs
        shown = body.prompts()[0] if prompt is None else prompt
        if isinstance(shown, str):
            tokens = model.backend.tokenize(shown)
        else:
            tokens = check_token_ids(shown, item.engine.runner.n_vocab)
    sampling = _sampling(body, model)
    options = make_options(
        logprobs=n_lp,
        max_tokens=max_tokens,
        seed=body.seed,
        stop=body.stop,
        grammar=grammar,
        **sampling,
    )
    if not sampling:
        options = model.options(options)  # the model card's sampling
    lookup = settings.prompt_lookup if body.prompt_lookup is None else body.prompt_lookup
    update: dict[str, object] = {"prompt_lookup": lookup}
    if body.draft_max is not None:
        update["draft_max"] = body.draft_max
    options = options.model_copy(update=update)
    if settings.log_prompts:
        log.info("%s prompt: %r", body.model, shown)
    limit = min(item.engine.max_request, model.n_ctx)
    if len(tokens) + max_tokens > limit:
        raise ContextOverflowError(
            f"prompt is {len(tokens)} tokens + max_tokens {max_tokens} > context {limit}",
            prompt_tokens=len(tokens),
            n_ctx=limit,
            max_tokens=max_tokens,
        )
    return item, tokens, options


def check_token_ids(ids: list[int], n_vocab: int) -> list[int]:
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise InputError(f"token ids must be below the vocabulary size {n_vocab}: {bad[:5]}")
    return list(ids)


def echo_logprobs(item: Loaded, tokens: list[int], k: int) -> tuple[str, list[TokenLogprob]]:
    """The first prompt token's text, and every later prompt token scored (model's own
    context, one request at a time, like the task endpoints)."""
    backend = item.model.backend
    with item.task_lock:
        return backend.detokenize(tokens[:1]), backend.prompt_logprobs(tokens, k)


def tokenizer_model(provider: ModelProvider, model: str | None) -> Loaded:
    """The model a tokenizer endpoint means: the one named, or the only one served."""
    if model is None:
        served = provider.available()
        if len(served) != 1:
            raise InputError(
                f'{len(served)} models are served: name one with "model" (or start '
                "`slm serve --model ID` for clients that cannot, such as lm-eval)"
            )
        model = served[0]
    return provider.get(model)


def grammar_for_format(fmt: ResponseFormat | None) -> str | None:
    """A GBNF grammar for `response_format` (json_object or json_schema), else None."""
    from slmkit.runtime.grammar import grammar_for, schema_of

    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return grammar_for({"type": "object"})
    if fmt.json_schema is None:
        raise InputError("response_format json_schema needs a json_schema object")
    return grammar_for(schema_of(fmt.json_schema.schema_))


def embed(provider: ModelProvider, model_id: str, texts: list[str]) -> list[list[float]]:
    """MiniLM for its names, else the language model's own embeddings."""
    if model_id in EMBEDDERS:
        return [list(map(float, v)) for v in provider.embedder().embed(texts)]
    return provider.get(model_id).model.embed(texts)


def task_window(item: Loaded) -> int:
    """Requests a task endpoint keeps in the engine at once: half its slots, so chat traffic
    keeps the rest."""
    return max(1, item.engine.scheduler.n_seq // 2)


def classify(
    provider: ModelProvider, settings: ServerSettings, body: ClassifyRequest, texts: list[str]
) -> list[Prediction]:
    """A fine-tuned classifier's predictions, or zero-shot classification (calibrated once per
    label set and kept), its labels scored through the model's engine with the chat traffic,
    at most half the engine's slots at once."""
    if settings.log_prompts:
        log.info("classify %s labels=%s texts=%r", body.model, body.labels, texts)
    fine = provider.classifier(body.model)
    if fine is not None:
        if body.labels:
            fine.check_labels(body.labels)
        return fine.predict(texts)
    if not body.labels:
        raise InputError(f"{body.model} is a language model: zero-shot needs labels")
    item = provider.get(body.model)
    key = (tuple(body.labels), body.instruction, body.calibrate)
    with item.classifiers_lock:  # the cache only: the scoring runs unlocked, in the engine
        clf: LikelihoodClassifier | None = item.classifiers.get(key)
        if clf is None:
            clf = LikelihoodClassifier(
                item.model,
                body.labels,
                instruction=body.instruction,
                calibrate=body.calibrate,
                engine=item.engine,
                window=task_window(item),
            )
            if len(item.classifiers) >= MAX_CLASSIFIERS:
                item.classifiers.pop(next(iter(item.classifiers)))
            item.classifiers[key] = clf
    return clf.predict(texts)


def summarize(
    provider: ModelProvider, settings: ServerSettings, body: SummarizeRequest
) -> SummaryResult:
    """Map-reduce summary through the model's engine, with the chat traffic: a level's chunks
    are summarized concurrently, at most half the engine's slots at once, so other requests
    keep theirs (and nothing waits on a per-model lock behind a long document). Extractive:
    the server's MiniLM picks sentences; no model is loaded."""
    if settings.log_prompts:
        log.info("summarize %s %s document=%r", body.method, body.model, body.input)
    if body.method == "extractive":
        from slmkit.tasks.extractive import ExtractiveSummarizer

        return ExtractiveSummarizer(provider.embedder(), max_words=body.max_words)(body.input)
    assert body.model is not None  # SummarizeRequest requires it unless extractive
    item = provider.get(body.model)
    window = task_window(item)
    if body.method == "hybrid":
        from slmkit.tasks.extractive import HybridSummarizer

        hybrid = HybridSummarizer(
            item.model,
            provider.embedder(),
            max_words=body.max_words,
            engine=item.engine,
            window=window,
        )
        return hybrid(body.input)
    summarizer = Summarizer(item.model, max_words=body.max_words, engine=item.engine, window=window)
    return summarizer(body.input)


def redact(provider: ModelProvider, body: RedactRequest, texts: list[str]) -> list[Redaction]:
    """Redaction by pattern and checksum; person names through the named model's task lock."""
    from slmkit.tasks.redact import redact as _redact

    if "person" not in body.kinds:
        return [_redact(t, body.kinds, region=body.region) for t in texts]
    if not body.model:
        raise InputError("redacting person names needs a model to find them")
    item = provider.get(body.model)
    with item.task_lock:
        return [_redact(t, body.kinds, region=body.region, model=item.model) for t in texts]


class RedactingFilter(logging.Filter):
    """Personal data out of every record before any handler writes it (request logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from slmkit.tasks.redact import redact as _redact

        record.msg = _redact(record.getMessage()).text
        record.args = ()
        return True


def _sampling(body: Any, model: Any) -> dict[str, Any]:
    """OpenAI semantics when the request sets temperature or top_p (those two alone shape
    sampling); the model card's recommended sampling when it sets neither."""
    if {"temperature", "top_p"} & body.model_fields_set or not model.entry.generation_defaults:
        return {"temperature": body.temperature, "top_p": body.top_p, "top_k": 0, "min_p": 0.0}
    return {}
