"""The one place a fine-tuned model is registered: its lineage record and the staged folder
that becomes its store entry."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.store import Store, file_sha256
from slmkit.train.config import FinetuneConfig


def lineage(
    cfg: FinetuneConfig, data: str, method: str, metrics: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Where a model came from: base, data (and its sha256 when it is a file), method, date,
    the whole config and the run's figures; `extra` adds what only one run knows (teacher,
    the base's own lineage)."""
    return {
        "base": cfg.base,
        "data": data,
        "data_sha256": file_sha256(Path(cfg.data)) if Path(cfg.data).is_file() else None,
        "method": method,
        **extra,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"),
        "metrics": metrics,
    }


def register(store: Store, out: str, fill: Callable[[Path], ModelEntry], *, force: bool) -> Path:
    """`fill` writes the model's files into a staging folder and returns its entry; the folder
    is then registered as `out` (atomically, like a pull) and the staging removed either way."""
    staging = store.staging_dir(out)
    try:
        return store.register_dir(fill(staging), staging, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
