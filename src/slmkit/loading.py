"""`load()`: a catalog id or a GGUF path to a ready `Model` (its own module, so task,
evaluation and server code reach it without importing the `slmkit` package upward)."""

from __future__ import annotations

from pathlib import Path

from slmkit.catalog.builtin import DEFAULT_MODEL
from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import InputError, ModelNotFoundError
from slmkit.model import Model
from slmkit.settings import Settings


def load(
    model: str | Path = DEFAULT_MODEL,
    *,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    pull: bool = False,
    store: Store | None = None,
    backend: str | None = None,
    draft: str | Path | None = None,
) -> Model:
    """Load a model by catalog id or GGUF path and return a ready Model.

    Nothing is downloaded unless `pull=True` (offline by design): a catalog model that is
    not installed raises ModelNotInstalledError naming the `slm pull` command. `backend`
    overrides the entry's (e.g. 'transformers' runs a GGUF in PyTorch, dequantized).
    `draft` (an id, a GGUF path, or 'auto': the entry's first installed compatible draft)
    turns on speculative decoding with that smaller model (runtime/speculate.py).
    """
    from slmkit.runtime import get_backend

    store = store or Store()
    settings = store.settings
    entry, path = _resolve(model, store, pull)
    ctx = n_ctx or min(settings.n_ctx, entry.context_length)
    if backend and backend != entry.backend:
        entry = entry.model_copy(update={"backend": backend})
    loaded = get_backend(entry.backend).load(
        path, entry, n_ctx=ctx, n_threads=n_threads or _threads(entry, settings)
    )
    model_ = Model(entry, loaded, path)
    if draft is not None:
        try:
            attach_draft(model_, draft, store)
        except BaseException:
            model_.close()
            raise
    return model_


def _threads(entry: ModelEntry, settings: Settings) -> int:
    """The user's thread count where they set one, else what `slm optimize` measured best for
    this file (never more than this machine has), else the default."""
    import os

    measured = entry.runtime.get("n_threads")
    if "n_threads" in settings.model_fields_set or not measured:
        return settings.n_threads
    return max(1, min(int(measured), os.cpu_count() or 1))


def installed_draft(entry: ModelEntry, store: Store) -> str | None:
    """The one rule for `draft="auto"` (`slm run --draft auto`, `slm serve --draft auto`): the
    model's first compatible draft, in catalog order, that is installed; None without one."""
    return next((d for d in entry.drafts if store.path(d) is not None), None)


def attach_draft(target: Model, draft: str | Path, store: Store) -> None:
    """Load `draft` with the target's context and threads and draft with it; InputError if
    'auto' finds no installed draft or the vocabularies differ."""
    if draft == "auto":
        found = installed_draft(target.entry, store)
        if found is None:
            wanted = ", ".join(target.entry.drafts) or "none in the catalog"
            raise InputError(f"no draft model installed for {target.id} (compatible: {wanted})")
        draft = found
    helper = load(draft, n_ctx=min(512, target.n_ctx), store=store)  # its own context: unused
    try:
        target.backend.attach_draft(helper.backend)
    except BaseException:
        helper.close()
        raise
    target.draft = helper


def hf_folder_entry(path: Path) -> ModelEntry:
    """An entry for a Hugging Face causal LM folder (config.json + weights + tokenizer), run by
    the transformers backend."""
    import json

    from slmkit.catalog.entries import LocalSource

    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"{path}: not a GGUF file nor a Hugging Face model folder with a config.json"
        ) from e
    files = [f for f in path.iterdir() if f.suffix in (".safetensors", ".bin")]
    return ModelEntry(
        id=path.name.lower(),
        family=str(cfg.get("model_type", "hf")),
        params=0,
        context_length=int(cfg.get("max_position_embeddings", 2048)),
        license="see the model's card",
        format="safetensors",
        quantization=str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32"),
        backend="transformers",
        chat_template="gguf",
        filename=files[0].name if files else "model.safetensors",
        size_bytes=sum(f.stat().st_size for f in files),
        sources=(LocalSource(path=str(path)),),
        imported=True,
    )


def _resolve(model: str | Path, store: Store, pull: bool) -> tuple[ModelEntry, Path]:
    """The catalog entry and file for an id (pulling if asked), a GGUF path, or a Hugging Face
    model folder (transformers backend)."""
    folder = Path(model).expanduser()
    if folder.is_dir() and ((folder / "config.json").is_file() or "/" in str(model)):
        return hf_folder_entry(folder), folder
    if isinstance(model, Path) or model.endswith(".gguf"):
        from slmkit.catalog.gguf_info import read_gguf_info
        from slmkit.catalog.store import entry_from_info

        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"no such model file: {path}")
        return entry_from_info(path.stem.lower(), path, read_gguf_info(path)), path
    model = store.preferred(model)
    found = store.path(model)
    if found is None and pull:
        found = store.pull(model)
    if found is None:
        return store.require(model)
    return store.get(model), found
