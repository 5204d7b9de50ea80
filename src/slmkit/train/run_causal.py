"""The causal run: LoRA (or full) fine-tuning of a catalog GGUF decoder on prompt/response
rows, merged, exported to an F16 GGUF and registered."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.catalog.entries import LocalSource, ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import DataError, InputError
from slmkit.train.config import (
    ENCODER_ALIASES,
    FinetuneConfig,
    FinetuneResult,
    check_resume,
    loop_metrics,
    use_bf16,
)
from slmkit.train.lineage import lineage, register
from slmkit.train.loop import Progress, TrainLoop


def causal_base(base: str, store: Store) -> tuple[ModelEntry, Path] | None:
    """The store entry and GGUF of a causal base, or None for an encoder base."""
    if base in ENCODER_ALIASES or Path(base).expanduser().is_dir():
        return None
    entry = store.get(base)
    if entry.kind != "decoder":
        return None
    if entry.format != "gguf":
        raise InputError(f"{base}: causal fine-tuning starts from a GGUF, not {entry.format}")
    return entry, store.require(base)[1]


def finetune_causal(
    cfg: FinetuneConfig,
    store: Store,
    entry: ModelEntry,
    path: Path,
    resume: bool,
    force: bool,
    max_minutes: float | None,
    progress: Callable[[Progress], None] | None,
    label_progress: Callable[..., Any] | None = None,
) -> FinetuneResult:
    """LoRA (or full) on instruction/response rows; merged, exported to F16 GGUF, registered.
    `label_progress(n, what)` counts the rows prepared before training (summary extracts)."""
    import torch

    from slmkit.train import causal

    t0 = time.perf_counter()
    if cfg.teacher or cfg.unlabeled:
        raise InputError(
            "--teacher/--unlabeled distil into an encoder classifier; a causal base learns "
            "from the responses in DATA"
        )
    data = _pairs(cfg, store, label_progress)
    run_dir = store.root / "runs" / cfg.out
    check_resume(cfg, run_dir, resume, force)
    torch.set_num_threads(store.settings.n_threads)
    train, held, dropped = _encode_causal(cfg, store, data)
    model = causal.load_causal(path, cfg.how, cfg.seed)
    if cfg.freeze_embeddings and cfg.how == "full":
        model.get_input_embeddings().weight.requires_grad_(False)
    loop = _causal_loop(cfg, model, train, held, run_dir, max_minutes)
    if resume:
        loop.resume()
    state = loop.run(progress)
    metrics: dict[str, Any] = {
        **data.extra,
        "train_rows": len(train.ids),
        "dropped_rows": dropped,
        "held_out_rows": len(held.ids),
        "base_token_accuracy": round(state.history[0]["held_accuracy"], 4),
        "held_token_accuracy": round(state.best, 4),
        **loop_metrics(cfg, state),
        "total_s": round(time.perf_counter() - t0, 1),
    }
    model = causal.merged(model, cfg.how)
    result = _register_causal(cfg, store, entry, path, model, metrics, force)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _pairs(cfg: FinetuneConfig, store: Store, progress: Callable[..., Any] | None) -> Any:
    """The prompt/response rows of DATA: summaries prompted as `slm summarize` prompts them
    (train/summaries.py, the base's tokenizer sizing the document's lead), or the others."""
    from slmkit.loading import load
    from slmkit.train import causal, summaries

    task = summaries.summary_task(cfg.data)
    if task is None:
        if cfg.summary_input != "document":
            raise InputError("--summary-input applies to document/summary rows only")
        return causal.load_pairs(
            cfg.data,
            holdout=cfg.holdout,
            seed=cfg.seed,
            limit=cfg.limit,
            text_field=cfg.text_field,
            label_field=cfg.label_field,
            instruction=cfg.instruction,
        )

    def tick(n: int) -> None:
        if progress:
            progress(n, "summary extracts")

    with load(cfg.base, pull=False, store=store) as chat:
        return summaries.summary_pairs(task, cfg, chat, tick)


def _causal_loop(
    cfg: FinetuneConfig,
    model: Any,
    train: Any,
    held: Any,
    run_dir: Path,
    max_minutes: float | None,
) -> TrainLoop:
    import torch

    from slmkit.train import causal

    bf16 = use_bf16(cfg.precision)

    def loss_fn(m: Any, idx: np.ndarray) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return causal.loss(m, train, idx)

    return TrainLoop(
        model,
        train.lengths,
        loss_fn,
        lambda m: causal.response_accuracy(m, held),
        cfg.loop(max_minutes, eval_at_start=True),
        run_dir,
    )


def _encode_causal(cfg: FinetuneConfig, store: Store, data: Any) -> tuple[Any, Any, int]:
    """Training and held-out rows tokenized through the base's chat template and tokenizer
    (the ones inference will use); how many training rows were too long."""
    from slmkit.loading import load
    from slmkit.train import causal

    n = causal.HELD_ROWS
    with load(cfg.base, pull=False, store=store) as chat:
        train, dropped = causal.encode_pairs(chat, data.prompts, data.responses, cfg.tokens)
        held, _ = causal.encode_pairs(
            chat, data.held_prompts[:n], data.held_responses[:n], cfg.tokens
        )
    if not train.ids or not held.ids:
        raise DataError(f"every row is longer than --max-length {cfg.tokens} tokens")
    return train, held, dropped


def _register_causal(
    cfg: FinetuneConfig,
    store: Store,
    entry: ModelEntry,
    path: Path,
    model: Any,
    metrics: dict[str, Any],
    force: bool,
) -> FinetuneResult:
    from slmkit.runtime.gguf_export import export_gguf

    name = f"{entry.id}.{cfg.out}.F16.gguf"  # the base's id: its file name may hold dots
    record = lineage(cfg, cfg.data, f"causal-{cfg.how}", metrics, parent=entry.lineage)

    def fill(staging: Path) -> ModelEntry:
        file = export_gguf(model, path, staging / name)
        return entry.model_copy(
            update={
                "id": cfg.out,
                "quantization": "F16",
                "filename": name,
                "size_bytes": file.stat().st_size,
                "sha256": None,
                "sources": (LocalSource(path=str(store.model_dir(cfg.out) / name)),),
                "description": f"{cfg.base} fine-tuned on {Path(cfg.data).name} ({cfg.how}).",
                "imported": True,
                "lineage": record,
            }
        )

    final = register(store, cfg.out, fill, force=force)
    return FinetuneResult(cfg.out, final / name, metrics, record)
