"""The encoder run: a BERT-like classifier (MiniLM by default) fine-tuned on labelled rows,
optionally distilled from a local SLM teacher, saved as safetensors and registered."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.catalog.entries import LocalSource, ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import InputError, ModelFormatError
from slmkit.train.config import (
    ENCODER_ALIASES,
    FinetuneConfig,
    FinetuneResult,
    check_resume,
    loop_metrics,
    use_bf16,
)
from slmkit.train.data import TrainData, load_train_data
from slmkit.train.lineage import lineage, register
from slmkit.train.loop import LoopState, Progress, TrainLoop


def finetune_encoder(
    cfg: FinetuneConfig,
    store: Store,
    *,
    resume: bool,
    force: bool,
    max_minutes: float | None,
    progress: Callable[[Progress], None] | None,
    label_progress: Callable[[int], Any] | None,
) -> FinetuneResult:
    """Train, evaluate on the held-out rows (and the task's test split), register as cfg.out."""
    import torch

    t0 = time.perf_counter()
    base = resolve_base(cfg.base, store)
    if cfg.teacher:
        store.require(cfg.teacher)
    data = load_train_data(
        cfg.data,
        text_field=cfg.text_field,
        label_field=cfg.label_field,
        holdout=cfg.holdout,
        seed=cfg.seed,
        limit=cfg.limit,
    )
    if cfg.instruction:
        data.instruction = cfg.instruction
    run_dir = store.root / "runs" / cfg.out
    check_resume(cfg, run_dir, resume, force)
    torch.set_num_threads(store.settings.n_threads)
    texts, targets = _targets(cfg, data, store, label_progress)
    t_label = time.perf_counter() - t0
    model, tokenizer, state = _train(
        cfg, base, data, texts, targets, run_dir, resume, max_minutes, progress
    )
    metrics: dict[str, Any] = {
        "train_rows": len(texts),
        "held_out_rows": len(data.held_texts),
        "held_accuracy": round(state.best, 4),
        **loop_metrics(cfg, state),
        "teacher_s": round(t_label, 1) if cfg.teacher else None,
    }
    if data.test is not None:
        metrics.update(_test_metrics(model, tokenizer, data, cfg.tokens))
    metrics["total_s"] = round(time.perf_counter() - t0, 1)
    result = _register(cfg, store, model, tokenizer, data, metrics, force)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def resolve_base(base: str, store: Store) -> Path:
    """The Hugging Face folder of an encoder base: MiniLM's asset, a fine-tuned classifier in
    the store, or a local folder; a clear error for anything that is not an encoder."""
    from slmkit.catalog.assets import MINILM_FP32, asset_dir
    from slmkit.runtime.encoder import is_encoder, read_config

    if base in ENCODER_ALIASES:
        folder = asset_dir(store, MINILM_FP32)
    elif Path(base).expanduser().is_dir():
        folder = Path(base).expanduser()
    else:
        entry = store.get(base)
        if entry.kind != "classifier" or entry.format != "safetensors":
            raise InputError(
                f"{base!r} is a {entry.kind} model ({entry.format}); encoder fine-tuning needs "
                f"an encoder: {', '.join(ENCODER_ALIASES[:1])}, a fine-tuned classifier, or a "
                "Hugging Face folder of a BERT-like model"
            )
        folder = store.require(base)[1].parent
    config = read_config(folder)
    if not is_encoder(config):
        raise ModelFormatError(
            f"{base}: model_type {config.get('model_type')!r} is not an encoder this method trains"
        )
    return folder


def _targets(
    cfg: FinetuneConfig, data: TrainData, store: Store, label_progress: Callable[[int], Any] | None
) -> tuple[list[str], np.ndarray]:
    """Training texts and one target probability row each (gold, or gold mixed with teacher)."""
    index = {c: i for i, c in enumerate(data.classes)}
    gold = np.eye(len(data.classes), dtype=np.float32)[[index[y] for y in data.labels]]
    texts = list(data.texts)
    if cfg.teacher is None:
        return texts, gold
    from slmkit.tasks.data import check_texts, read_rows
    from slmkit.train.distill import teacher_probs

    extra = []
    if cfg.unlabeled:
        extra = check_texts([str(r[cfg.text_field]) for r in read_rows(cfg.unlabeled).rows])
    probs = teacher_probs(
        cfg.teacher,
        texts + extra,
        data.classes,
        instruction=data.instruction,
        store=store,
        progress=label_progress,
    )
    mixed = cfg.alpha * probs[: len(texts)] + (1 - cfg.alpha) * gold
    return texts + extra, np.concatenate([mixed, probs[len(texts) :]])


def _train(
    cfg: FinetuneConfig,
    base: Path,
    data: TrainData,
    texts: list[str],
    targets: np.ndarray,
    run_dir: Path,
    resume: bool,
    max_minutes: float | None,
    progress: Callable[[Progress], None] | None,
) -> tuple[Any, Any, LoopState]:
    """The model and tokenizer with their best weights, and how the loop ended."""
    import torch

    from slmkit.train.encoder import build_model, encode, predict_logits, soft_cross_entropy

    tokenizer, model = build_model(base, data.classes, cfg.how, cfg.seed)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    train_enc = encode(tokenizer, texts, cfg.tokens)
    held_enc = encode(tokenizer, data.held_texts, cfg.tokens)
    target_t = torch.from_numpy(targets)
    held_gold = np.array([data.classes.index(y) for y in data.held_labels])
    bf16 = use_bf16(cfg.precision)

    def loss_fn(m: Any, idx: np.ndarray) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = m(**train_enc.batch(idx)).logits
        return soft_cross_entropy(logits.float(), target_t[idx])

    def eval_fn(m: Any) -> float:
        return float((predict_logits(m, held_enc).argmax(1) == held_gold).mean())

    loop = TrainLoop(model, train_enc.lengths, loss_fn, eval_fn, cfg.loop(max_minutes), run_dir)
    if resume:
        loop.resume()
    return model, tokenizer, loop.run(progress)


def _test_metrics(model: Any, tokenizer: Any, data: TrainData, max_length: int) -> dict[str, Any]:
    from slmkit.evaluate import classification_metrics
    from slmkit.train.encoder import encode, predict_logits

    assert data.test is not None
    texts, gold = data.test
    model.eval()
    pred = predict_logits(model, encode(tokenizer, texts, max_length)).argmax(1)
    m = classification_metrics(gold, [data.classes[i] for i in pred], data.classes)
    return {f"test_{k}": v for k, v in m.items() if not isinstance(v, dict)} | {"test_n": len(gold)}


def _register(
    cfg: FinetuneConfig,
    store: Store,
    model: Any,
    tokenizer: Any,
    data: TrainData,
    metrics: dict[str, Any],
    force: bool,
) -> FinetuneResult:
    from slmkit.runtime.encoder import read_config
    from slmkit.train.encoder import save_model

    method = ("distill-" if cfg.teacher else "") + cfg.how
    record = lineage(cfg, data.name, method, metrics, teacher=cfg.teacher)

    def fill(staging: Path) -> ModelEntry:
        save_model(model, tokenizer, staging, cfg.how)
        config = read_config(staging)
        return ModelEntry(
            id=cfg.out,
            family=str(config.get("model_type", "encoder")),
            params=sum(p.numel() for p in model.parameters()),
            context_length=int(config.get("max_position_embeddings", 512)),
            license=_license(cfg.base),
            format="safetensors",
            quantization="f32",
            backend="transformers",
            chat_template="none",
            filename="model.safetensors",
            size_bytes=(staging / "model.safetensors").stat().st_size,
            sources=(LocalSource(path=str(store.model_dir(cfg.out))),),
            kind="classifier",
            labels=data.classes,
            description=f"Fine-tuned from {cfg.base} on {Path(data.name).name} ({cfg.how}).",
            imported=True,
            lineage=record,
        )

    path = register(store, cfg.out, fill, force=force)
    return FinetuneResult(cfg.out, path, metrics, record)


def _license(base: str) -> str:
    return "apache-2.0" if base in ENCODER_ALIASES else "see base model"
