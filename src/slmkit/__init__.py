"""slmkit: small language models that run anywhere, measured.

>>> import slmkit
>>> m = slmkit.load("smollm2-135m-instruct", pull=True)
>>> m.chat([{"role": "user", "content": "What is the capital of France?"}]).text
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from slmkit.catalog.builtin import DEFAULT_MODEL
from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import (
    BackendUnavailableError,
    ChatTemplateError,
    ChecksumError,
    ContextOverflowError,
    DataError,
    DataNotInstalledError,
    EmptyPromptError,
    EngineClosedError,
    EngineFullError,
    ExtractionError,
    GuardRefusedError,
    InputError,
    InvalidOptionsError,
    KbNotFoundError,
    LabelError,
    ModelFormatError,
    ModelNotFoundError,
    ModelNotInstalledError,
    NoSentenceBoundaryError,
    OfflineError,
    OverBudgetError,
    RequestTooLargeError,
    RuntimeFailure,
    SchemaError,
    ServerError,
    SlmkitError,
    SourceUnavailableError,
    UnavailableError,
)
from slmkit.loading import load
from slmkit.model import Completion, Message, Model
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Chunk, GenerationStats, LogLikelihood
from slmkit.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    from pydantic import BaseModel

    from slmkit.tasks.ask import Answer
    from slmkit.tasks.cascade import Cascade
    from slmkit.tasks.classify import Prediction
    from slmkit.tasks.redact import Redaction
    from slmkit.tasks.summarize import SummaryResult
    from slmkit.train import FinetuneConfig, FinetuneResult

__all__ = [
    "DEFAULT_MODEL",
    "Answer",
    "Cascade",
    "Chunk",
    "Completion",
    "FinetuneResult",
    "GenerationOptions",
    "GenerationStats",
    "LogLikelihood",
    "Message",
    "Model",
    "ModelEntry",
    "Prediction",
    "Redaction",
    "Settings",
    "Store",
    "SummaryResult",
    "BackendUnavailableError",
    "ChatTemplateError",
    "ChecksumError",
    "ContextOverflowError",
    "DataError",
    "DataNotInstalledError",
    "EmptyPromptError",
    "NoSentenceBoundaryError",
    "EngineClosedError",
    "EngineFullError",
    "ExtractionError",
    "GuardRefusedError",
    "InputError",
    "InvalidOptionsError",
    "KbNotFoundError",
    "LabelError",
    "ModelFormatError",
    "ModelNotFoundError",
    "ModelNotInstalledError",
    "OfflineError",
    "OverBudgetError",
    "RequestTooLargeError",
    "RuntimeFailure",
    "SchemaError",
    "ServerError",
    "SlmkitError",
    "SourceUnavailableError",
    "UnavailableError",
    "ask",
    "cascade",
    "classify",
    "close_models",
    "embed",
    "extract",
    "finetune",
    "generate_many",
    "load",
    "redact",
    "summarize",
]

# Return types of the task functions, imported on first use (PEP 562) so that `import slmkit`
# stays light: their modules pull numpy, rich or the training stack.
_LAZY = {
    "Answer": "slmkit.tasks.ask",
    "Cascade": "slmkit.tasks.cascade",
    "Prediction": "slmkit.tasks.classify",
    "Redaction": "slmkit.tasks.redact",
    "SummaryResult": "slmkit.tasks.summarize",
    "FinetuneResult": "slmkit.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slmkit' has no attribute {name!r}")


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slmkit")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _version()


# Models the task functions loaded by id, kept for the next call (a loop of
# `slmkit.classify(..., model="id")` loads the weights once): the last MODEL_CACHE_SIZE ids,
# least recently used closed first; `close_models()` frees them all.
MODEL_CACHE_SIZE = 2
_models: OrderedDict[str, Model] = OrderedDict()
_models_lock = threading.Lock()


def _model(model: str | Model) -> Model:
    """The Model given, or the one this process loaded for that id."""
    if isinstance(model, Model):
        return model
    with _models_lock:
        if model in _models:
            _models.move_to_end(model)
            return _models[model]
        loaded = _models[model] = load(model)
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)[1].close()
        return loaded


def close_models() -> None:
    """Close the models the task functions loaded by id (they load again on the next call)."""
    with _models_lock:
        while _models:
            _models.popitem()[1].close()


def classify(
    texts: str | Sequence[str],
    labels: Sequence[str],
    *,
    model: str | Model = DEFAULT_MODEL,
    instruction: str = "Classify the text.",
    calibrate: bool = True,
) -> list[Prediction]:
    """Zero-shot classify one text or many; returns one Prediction (label, probs) per text.

    For trained heads and few-shot, use slmkit.tasks.classify directly.
    """
    from slmkit.tasks.classify import LikelihoodClassifier

    batch = [texts] if isinstance(texts, str) else list(texts)
    clf = LikelihoodClassifier(_model(model), labels, instruction=instruction, calibrate=calibrate)
    return clf.predict(batch)


def ask(
    question: str,
    *,
    kb: str,
    model: str | Model = DEFAULT_MODEL,
    k: int = 4,
    min_similarity: float | None = None,
    options: GenerationOptions | None = None,
    rerank: bool = False,
) -> Answer:
    """Answer `question` from knowledge base `kb` alone (`slm kb create`), citing the excerpts
    it uses ([1], [2]); an explicit refusal when the documents do not hold the answer.
    Returns an Answer: text, citations (file, span, text), refused, confidence, excerpts.
    `rerank`: the model's own log-likelihood picks the k excerpts among 3k retrieved.

    >>> a = slmkit.ask("How do I reset my password?", kb="support")
    >>> a.text, [c.path for c in a.citations]
    """
    from slmkit.tasks.ask import MIN_SIMILARITY
    from slmkit.tasks.ask import ask as _ask

    floor = MIN_SIMILARITY if min_similarity is None else min_similarity
    return _ask(
        question,
        kb=kb,
        model=_model(model),
        k=k,
        min_similarity=floor,
        options=options,
        rerank=rerank,
    )


def cascade(
    small: str,
    large: str,
    labels: Sequence[str],
    *,
    instruction: str = "Classify the text.",
    threshold: float = 0.9,
    calibrate_on: tuple[Sequence[str], Sequence[str]] | None = None,
    target_accuracy: float | None = None,
) -> Cascade:
    """A small -> large classification cascade (each a model id, a classifier from
    `slm finetune`, or an endpoint URL). With `calibrate_on=(texts, labels)` the small
    model's probabilities are temperature-scaled and the threshold chosen there for
    `target_accuracy` (default: the large model's accuracy less one point).

    >>> c = slmkit.cascade("ft-sst2", "qwen2.5-coder-1.5b-instruct", ["negative", "positive"])
    >>> c.predict(["a gem of a film"])[0].escalated
    """
    from slmkit.tasks.cascade import make_cascade

    c = make_cascade(f"{small},{large}", labels, instruction)
    c.threshold = threshold
    if calibrate_on is not None:
        c.calibrate(calibrate_on[0], calibrate_on[1], target_accuracy)
    return c


def redact(
    text: str,
    *,
    kinds: Sequence[str] = ("email", "phone", "card", "iban", "ip"),
    region: str = "US",
    model: str | Model | None = None,
) -> Redaction:
    """Replace personal data by [KIND]: emails, phone numbers (per `region`), card numbers
    (Luhn), IBANs (mod-97), IP addresses; person names too if "person" is in `kinds` and a
    chat `model` is given to find them. Returns the text and the spans found."""
    from slmkit.tasks.redact import redact as _redact

    return _redact(text, kinds, region=region, model=_model(model) if model else None)


def summarize(
    text: str,
    *,
    model: str | Model = DEFAULT_MODEL,
    max_words: int = 60,
    method: Literal["model", "extractive", "hybrid"] = "model",
) -> SummaryResult:
    """Summarize a document of any length; returns a SummaryResult (summary, coverage, ...).
    method="extractive": the document's most central sentences (MiniLM), no model loaded;
    "hybrid": the model rewrites those sentences (a short prompt)."""
    if method == "extractive":
        from slmkit.tasks.extractive import ExtractiveSummarizer

        return ExtractiveSummarizer(max_words=max_words)(text)
    if method == "hybrid":
        from slmkit.tasks.extractive import HybridSummarizer

        return HybridSummarizer(_model(model), max_words=max_words)(text)
    from slmkit.tasks.summarize import Summarizer

    return Summarizer(_model(model), max_words=max_words)(text)


def extract(
    text: str, schema: dict[str, Any] | type[BaseModel], *, model: str | Model = DEFAULT_MODEL
) -> dict[str, Any]:
    """Extract an object matching a JSON Schema (dict) or pydantic model class from text."""
    from slmkit.tasks.extract import Extractor

    return Extractor(_model(model), schema)(text).data


def embed(texts: str | Sequence[str], *, model: str | Model = "minilm-int8") -> np.ndarray:
    """Sentence embeddings: a float32 array with one row per text, L2-normalised by the
    MiniLM embedders ('minilm-int8', 'minilm-fp32'); a language model (a Model, or
    'slm:MODEL_ID') gives its own mean-pooled hidden states."""
    import numpy as np

    from slmkit.tasks.embed import embed as _embed

    if isinstance(model, Model):
        batch = [texts] if isinstance(texts, str) else list(texts)
        return np.asarray(model.embed(batch), dtype=np.float32)
    return _embed(texts, model=model)


def finetune(
    data: str,
    *,
    out: str,
    base: str = "all-minilm-l6-v2",
    config: FinetuneConfig | None = None,
    resume: bool = False,
    force: bool = False,
    max_minutes: float | None = None,
) -> FinetuneResult:
    """Fine-tune `base` on a built-in task or a labelled JSONL/CSV and register it in the
    store as `out`: an encoder classifier, or a catalog decoder with LoRA. The run's other
    settings are a `slmkit.train.FinetuneConfig` (`slm finetune --help` lists them); `data`,
    `out` and `base` given here replace its own. `slm classify --model OUT` uses the result.

    >>> cfg = slmkit.train.FinetuneConfig(data="sst2", out="ft-sst2", limit=2000)
    >>> slmkit.finetune("sst2", out="ft-sst2", config=cfg).metrics["test_accuracy"]
    """
    from slmkit.train import FinetuneConfig
    from slmkit.train import finetune as _finetune

    fields = {"data": data, "out": out, "base": base}
    given = {} if config is None else config.model_dump()
    cfg = FinetuneConfig.model_validate(given | fields)
    return _finetune(cfg, resume=resume, force=force, max_minutes=max_minutes)


def generate_many(
    model: str | Model,
    prompts: Sequence[str | Sequence[Message]],
    options: GenerationOptions | None = None,
    *,
    n_seq: int = 16,
    system: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Generate for every prompt (a str is completed raw, a message list is chatted), up to
    `n_seq` at a time in shared decode steps of the continuous-batching engine; results in
    prompt order (see slmkit.engine.generate_many for a server's engine)."""
    from slmkit.engine import generate_many as _generate_many

    return _generate_many(
        _model(model), prompts, options, n_seq=n_seq, system=system, progress=progress
    )
