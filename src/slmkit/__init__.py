"""slmkit: small language models that run anywhere, measured.

>>> import slmkit
>>> m = slmkit.load("smollm2-135m-instruct", pull=True)
>>> m.chat([{"role": "user", "content": "What is the capital of France?"}]).text
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmkit.catalog.builtin import DEFAULT_MODEL
from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import (
    BackendUnavailableError,
    ChatTemplateError,
    ChecksumError,
    ContextOverflowError,
    EmptyPromptError,
    InvalidOptionsError,
    ModelFormatError,
    ModelNotFoundError,
    ModelNotInstalledError,
    SlmkitError,
    SourceUnavailableError,
)
from slmkit.model import Completion, Model
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Chunk, GenerationStats, LogLikelihood
from slmkit.settings import Settings

__all__ = [
    "DEFAULT_MODEL",
    "BackendUnavailableError",
    "ChatTemplateError",
    "ChecksumError",
    "Chunk",
    "Completion",
    "ContextOverflowError",
    "EmptyPromptError",
    "GenerationOptions",
    "GenerationStats",
    "InvalidOptionsError",
    "LogLikelihood",
    "Model",
    "ModelEntry",
    "ModelFormatError",
    "ModelNotFoundError",
    "ModelNotInstalledError",
    "Settings",
    "SlmkitError",
    "SourceUnavailableError",
    "Store",
    "classify",
    "embed",
    "extract",
    "generate_many",
    "load",
    "summarize",
]

__version__ = "0.1.0"


def load(
    model: str | Path = DEFAULT_MODEL,
    *,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    pull: bool = False,
    store: Store | None = None,
) -> Model:
    """Load a model by catalog id or GGUF path and return a ready Model.

    Nothing is downloaded unless `pull=True` (offline by design): a catalog model that is
    not installed raises ModelNotInstalledError naming the `slm pull` command.
    """
    from slmkit.catalog.store import _entry_from_info
    from slmkit.runtime import get_backend

    store = store or Store()
    settings = store.settings
    if isinstance(model, Path) or (isinstance(model, str) and model.endswith(".gguf")):
        from slmkit.catalog.gguf_info import read_gguf_info

        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"no such model file: {path}")
        entry = _entry_from_info(path.stem.lower(), path, read_gguf_info(path))
    else:
        entry = store.get(model)
        found = store.path(model)
        if found is None and pull:
            found = store.pull(model)
        if found is None:
            entry, found = store.require(model)
        path = found
    ctx = n_ctx or min(settings.n_ctx, entry.context_length)
    backend = get_backend(entry.backend).load(
        path, entry, n_ctx=ctx, n_threads=n_threads or settings.n_threads
    )
    return Model(entry, backend, path)


def classify(
    texts: str | list[str],
    labels: list[str],
    *,
    model: str | Model = DEFAULT_MODEL,
    instruction: str = "Classify the text.",
    calibrate: bool = True,
) -> list[Any]:
    """Zero-shot classify one text or many; returns one Prediction (label, probs) per text.

    For trained heads and few-shot, use slmkit.tasks.classify directly.
    """
    from slmkit.tasks.classify import LikelihoodClassifier

    m = model if isinstance(model, Model) else load(model)
    batch = [texts] if isinstance(texts, str) else list(texts)
    clf = LikelihoodClassifier(m, labels, instruction=instruction, calibrate=calibrate)
    return clf.predict(batch)


def summarize(text: str, *, model: str | Model = DEFAULT_MODEL, max_words: int = 60) -> Any:
    """Summarize a document of any length; returns a SummaryResult (summary, coverage, ...)."""
    from slmkit.tasks.summarize import Summarizer

    m = model if isinstance(model, Model) else load(model)
    return Summarizer(m, max_words=max_words)(text)


def extract(text: str, schema: Any, *, model: str | Model = DEFAULT_MODEL) -> dict[str, Any]:
    """Extract an object matching a JSON Schema (dict) or pydantic model class from text."""
    from slmkit.tasks.extract import Extractor

    m = model if isinstance(model, Model) else load(model)
    return Extractor(m, schema)(text).data


def embed(texts: str | list[str], *, model: str = "minilm-int8") -> Any:
    """Sentence embeddings (numpy array, one L2-normalised row per text)."""
    from slmkit.tasks.embed import embed as _embed

    return _embed(texts, model=model)


def generate_many(model: Model, prompts: list[Any], **kw: Any) -> list[Completion]:
    """Batch generation on the continuous-batching engine (see slmkit.engine.generate_many)."""
    from slmkit.engine import generate_many as _generate_many

    return _generate_many(model, prompts, **kw)
