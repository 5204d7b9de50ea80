"""`slmkit.finetune`: specialize a model on the user's data and register it in the store with
its lineage. Two runs share the settings (train/config.py) and the registration
(train/lineage.py): an encoder classifier (train/run_encoder.py; optionally distilled from a
larger local SLM) and a causal decoder with LoRA (train/run_causal.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slmkit.catalog.store import Store
from slmkit.train.config import FinetuneConfig, FinetuneResult, result_dict, use_bf16
from slmkit.train.loop import Progress
from slmkit.train.run_causal import causal_base, finetune_causal
from slmkit.train.run_encoder import finetune_encoder, resolve_base

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "Progress",
    "causal_base",
    "finetune",
    "resolve_base",
    "result_dict",
    "use_bf16",
]


def finetune(
    cfg: FinetuneConfig,
    *,
    store: Store | None = None,
    resume: bool = False,
    force: bool = False,
    max_minutes: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    label_progress: Callable[..., Any] | None = None,
) -> FinetuneResult:
    """Train, evaluate on the held-out rows (and the task's test split), register as cfg.out:
    the causal run when the base is a catalog decoder, else the encoder run."""
    from slmkit.runtime.encoder import import_torch

    import_torch()  # one clear error when the [train] extra is missing
    store = store or Store()
    store.check_new_id(cfg.out, force=force)
    causal = causal_base(cfg.base, store)
    cfg = cfg.resolved(causal is not None)
    if causal is not None:
        return finetune_causal(
            cfg, store, *causal, resume, force, max_minutes, progress, label_progress
        )
    return finetune_encoder(
        cfg,
        store,
        resume=resume,
        force=force,
        max_minutes=max_minutes,
        progress=progress,
        label_progress=label_progress,
    )
