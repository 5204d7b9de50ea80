"""Typed exceptions. Every user-facing failure is one of these, with a one-line message."""

from __future__ import annotations


class SlmkitError(Exception):
    """Base class for every error slmkit raises on purpose."""


class ModelNotFoundError(SlmkitError, KeyError):
    """The model id is neither in the catalog nor in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelNotInstalledError(SlmkitError):
    """The model is known but its file is not in the store yet."""


class SourceUnavailableError(SlmkitError):
    """No configured source could deliver the model file (offline hub, missing package...)."""


class ChecksumError(SlmkitError):
    """A downloaded or imported file does not match its pinned sha256."""


class ModelFormatError(SlmkitError):
    """The file is not a loadable model (not GGUF, truncated, corrupt)."""


class BackendUnavailableError(SlmkitError):
    """The model needs a runtime backend that is not installed or not implemented."""


class ChatTemplateError(SlmkitError):
    """The model has no usable chat template (for example a base model)."""


class InvalidOptionsError(SlmkitError, ValueError):
    """Generation or task options failed validation."""


class EmptyPromptError(SlmkitError, ValueError):
    """The prompt or message list is empty."""


class ContextOverflowError(SlmkitError):
    """The prompt does not fit the context window and the overflow policy is 'error'."""

    def __init__(self, message: str, *, prompt_tokens: int, n_ctx: int, max_tokens: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
