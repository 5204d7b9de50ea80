"""Runtime backends behind one interface, registered by name (entry-point group
`slmkit.backends` lets third parties add one)."""

from __future__ import annotations

import importlib.metadata

from slmkit.errors import BackendUnavailableError
from slmkit.runtime.base import Backend, BatchRunner, Chunk, GenerationStats, LogLikelihood

__all__ = [
    "Backend",
    "BatchRunner",
    "Chunk",
    "GenerationStats",
    "LogLikelihood",
    "get_backend",
    "register_backend",
]

_BUILTIN = {
    "llamacpp": "slmkit.runtime.llamacpp:LlamaCppBackend",
    "transformers": "slmkit.runtime.transformers:TransformersBackend",
}
# Backends registered in-process by an application (as `llm` plugins register models).
_registered: dict[str, type[Backend]] = {}


def register_backend(name: str, cls: type[Backend]) -> None:
    """Make `cls` the backend for catalog entries whose `backend` is `name`."""
    _registered[name] = cls


def get_backend(name: str) -> type[Backend]:
    """Resolve a backend class by name: registered in-process, built-ins, entry points."""
    if name in _registered:
        return _registered[name]
    target = _BUILTIN.get(name)
    if target is None:
        for ep in importlib.metadata.entry_points(group="slmkit.backends"):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        raise BackendUnavailableError(
            f"backend {name!r} is not available in this install (known: {', '.join(_BUILTIN)})"
        )
    module, _, attr = target.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls
