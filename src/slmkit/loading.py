"""`load()`: a catalog id or a GGUF path to a ready `Model` (its own module, so task,
evaluation and server code reach it without importing the `slmkit` package upward)."""

from __future__ import annotations

from pathlib import Path

from slmkit.catalog.builtin import DEFAULT_MODEL
from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import ModelNotFoundError
from slmkit.model import Model


def load(
    model: str | Path = DEFAULT_MODEL,
    *,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    pull: bool = False,
    store: Store | None = None,
    backend: str | None = None,
) -> Model:
    """Load a model by catalog id or GGUF path and return a ready Model.

    Nothing is downloaded unless `pull=True` (offline by design): a catalog model that is
    not installed raises ModelNotInstalledError naming the `slm pull` command. `backend`
    overrides the entry's (e.g. 'transformers' runs a GGUF in PyTorch, dequantized).
    """
    from slmkit.runtime import get_backend

    store = store or Store()
    settings = store.settings
    entry, path = _resolve(model, store, pull)
    ctx = n_ctx or min(settings.n_ctx, entry.context_length)
    if backend and backend != entry.backend:
        entry = entry.model_copy(update={"backend": backend})
    loaded = get_backend(entry.backend).load(
        path, entry, n_ctx=ctx, n_threads=n_threads or settings.n_threads
    )
    return Model(entry, loaded, path)


def _resolve(model: str | Path, store: Store, pull: bool) -> tuple[ModelEntry, Path]:
    """The catalog entry and file for an id (pulling if asked) or a GGUF path."""
    if isinstance(model, Path) or model.endswith(".gguf"):
        from slmkit.catalog.gguf_info import read_gguf_info
        from slmkit.catalog.store import entry_from_info

        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"no such model file: {path}")
        return entry_from_info(path.stem.lower(), path, read_gguf_info(path)), path
    found = store.path(model)
    if found is None and pull:
        found = store.pull(model)
    if found is None:
        return store.require(model)
    return store.get(model), found
