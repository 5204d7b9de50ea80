"""slmkit: small language models that run anywhere, measured.

>>> import slmkit
>>> m = slmkit.load("smollm2-135m-instruct", pull=True)
>>> m.chat([{"role": "user", "content": "What is the capital of France?"}]).text
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
    LabelError,
    ModelFormatError,
    ModelNotFoundError,
    ModelNotInstalledError,
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

    from slmkit.tasks.cascade import Cascade
    from slmkit.tasks.classify import Prediction
    from slmkit.tasks.redact import Redaction
    from slmkit.tasks.summarize import SummaryResult
    from slmkit.train import FinetuneResult

__all__ = [
    "DEFAULT_MODEL",
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
    "EngineClosedError",
    "EngineFullError",
    "ExtractionError",
    "GuardRefusedError",
    "InputError",
    "InvalidOptionsError",
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
    "cascade",
    "classify",
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


def _model(model: str | Model) -> Model:
    return model if isinstance(model, Model) else load(model)


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
    text: str, *, model: str | Model = DEFAULT_MODEL, max_words: int = 60
) -> SummaryResult:
    """Summarize a document of any length; returns a SummaryResult (summary, coverage, ...)."""
    from slmkit.tasks.summarize import Summarizer

    return Summarizer(_model(model), max_words=max_words)(text)


def extract(
    text: str, schema: dict[str, Any] | type[BaseModel], *, model: str | Model = DEFAULT_MODEL
) -> dict[str, Any]:
    """Extract an object matching a JSON Schema (dict) or pydantic model class from text."""
    from slmkit.tasks.extract import Extractor

    return Extractor(_model(model), schema)(text).data


def embed(texts: str | Sequence[str], *, model: str = "minilm-int8") -> np.ndarray:
    """Sentence embeddings: a float32 array with one L2-normalised row per text."""
    from slmkit.tasks.embed import embed as _embed

    return _embed(texts, model=model)


def finetune(
    data: str, *, out: str, base: str = "all-minilm-l6-v2", **options: Any
) -> FinetuneResult:
    """Fine-tune an encoder classifier on a built-in task or a labelled JSONL/CSV and register
    it in the store as `out` (options: the fields of slmkit.train.FinetuneConfig, plus
    resume, force, max_minutes); `slm classify --model OUT` and `slmkit.tasks.finetuned` use it.
    """
    from slmkit.train import FinetuneConfig
    from slmkit.train import finetune as _finetune

    run = {k: options.pop(k) for k in ("resume", "force", "max_minutes") if k in options}
    return _finetune(FinetuneConfig(data=data, out=out, base=base, **options), **run)


def generate_many(
    model: Model, prompts: Sequence[str | Sequence[Message]], **kw: Any
) -> list[Completion]:
    """Batch generation on the continuous-batching engine (see slmkit.engine.generate_many)."""
    from slmkit.engine import generate_many as _generate_many

    return _generate_many(model, prompts, **kw)
