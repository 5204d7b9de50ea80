"""Typed exceptions. Every user-facing failure is one of these, with a one-line message.

Two families, so callers (the CLI, the HTTP server) can tell who is at fault:
- `InputError`: the caller asked for something wrong or unknown (bad options, empty
  prompt, unknown model, too long a prompt). The server answers 4xx.
- `ServerError`: the request was fine but slmkit could not serve it (the runtime failed,
  the engine is closed or overloaded). The server answers 5xx, or 429/503 with Retry-After
  for the `UnavailableError` kinds.
Errors of store operations (`pull`, `import`) that fit neither stay plain `SlmkitError`s.
"""

from __future__ import annotations

from typing import Any


class SlmkitError(Exception):
    """Base class for every error slmkit raises on purpose."""


# --- client errors ----------------------------------------------------------------------------
class InputError(SlmkitError, ValueError):
    """The request or input is invalid; fixing it is up to the caller."""


class ModelNotFoundError(InputError, KeyError):
    """The model id is neither in the catalog nor in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KbNotFoundError(ModelNotFoundError):
    """No knowledge base of that name in the store (`slm kb list`); 404 in the server."""


class ModelNotInstalledError(InputError):
    """The model is known but its file is not in the store yet."""


class ModelFormatError(InputError):
    """The file is not a loadable model (not GGUF, truncated, corrupt)."""


class ChatTemplateError(InputError):
    """The model has no usable chat template (for example a base model)."""


class InvalidOptionsError(InputError):
    """Generation or task options failed validation."""


class EmptyPromptError(InputError):
    """The prompt or message list is empty."""


class NoSentenceBoundaryError(InputError):
    """A document an extractive summary cannot be picked from: one long run-on "sentence"."""


class LabelError(InputError):
    """The label set is unusable (fewer than two labels, duplicates, empty names)."""


class DataError(InputError):
    """An input data file could not be read as rows."""


class DataNotInstalledError(DataError):
    """A built-in dataset is known but not in the store yet (`slm data pull NAME`)."""


class GuardRefusedError(InputError):
    """A compressed model lost more task accuracy than allowed; it was not registered."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class SchemaError(InputError):
    """The JSON Schema cannot be used for extraction."""


class RequestTooLargeError(InputError):
    """The request body is over the server's limit."""


class ContextOverflowError(InputError):
    """The prompt does not fit the context window and the overflow policy is 'error'."""

    def __init__(self, message: str, *, prompt_tokens: int, n_ctx: int, max_tokens: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens


# --- store errors -----------------------------------------------------------------------------
class SourceUnavailableError(SlmkitError):
    """No configured source could deliver the model file (offline hub, missing package...)."""


class OfflineError(SlmkitError, ConnectionError):
    """The offline guard stopped a connection to a non-loopback address (names the caller)."""


class ChecksumError(SlmkitError):
    """A downloaded or imported file does not match its pinned sha256."""


# --- server-side failures ---------------------------------------------------------------------
class ServerError(SlmkitError):
    """slmkit failed to serve a valid request."""


class RuntimeFailure(ServerError):
    """The runtime (llama.cpp) failed: a decode, a context or a sampler could not be made."""


class BackendUnavailableError(ServerError):
    """The model needs a runtime backend that is not installed or not implemented."""


class ExtractionError(ServerError):
    """The model produced no output that validates against the schema."""


class UnavailableError(ServerError):
    """Temporarily unable to serve; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineClosedError(UnavailableError):
    """The engine was closed (its model unloaded) while the request was submitted."""


class EngineFullError(UnavailableError):
    """The engine's waiting queue is full."""


class OverBudgetError(UnavailableError):
    """Loading this model would exceed the memory budget and no idle model can go."""
