"""`slmkit.finetune`: specialize an encoder classifier on labelled data (optionally distilled
from a larger local SLM) and register it in the store with its lineage."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from slmkit.catalog.entries import LocalSource, ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import DataError, InputError, ModelFormatError
from slmkit.train.data import TrainData, load_train_data
from slmkit.train.loop import LoopConfig, LoopState, Progress, TrainLoop

__all__ = ["FinetuneConfig", "FinetuneResult", "Progress", "finetune", "resolve_base"]

ENCODER_ALIASES = ("all-minilm-l6-v2", "minilm", "minilm-fp32")


class FinetuneConfig(BaseModel):
    """Everything that decides a run's result (checked again on --resume)."""

    model_config = ConfigDict(extra="forbid")

    data: str
    base: str = Field(
        default="all-minilm-l6-v2",
        description="An encoder (classifier), or a chat GGUF model (instruction/response rows).",
    )
    out: str = Field(description="Id to register the result under.")
    method: Literal["full", "lora"] | None = Field(
        default=None, description="All weights, or LoRA (default: full encoder, LoRA causal)."
    )
    teacher: str | None = Field(default=None, description="Local SLM to distil from.")
    unlabeled: str | None = Field(default=None, description="Extra texts the teacher labels.")
    alpha: float = Field(default=0.5, ge=0, le=1, description="Teacher weight in the target.")
    epochs: float = Field(default=3.0, gt=0, description="Passes over the training rows.")
    batch_size: int | None = Field(
        default=None, ge=1, description="Rows per step (default: 32 encoder, 8 causal)."
    )
    lr: float | None = Field(
        default=None,
        gt=0,
        description="Default: encoder 1e-4 full, 5e-4 LoRA; causal 2e-5 full, 2e-4 LoRA.",
    )
    max_length: int | None = Field(
        default=None,
        ge=8,
        le=4096,
        description="Tokens per row: encoder texts are cut (default 128, at most 512); "
        "longer causal rows are left out (default 512).",
    )
    holdout: float = Field(default=0.1, gt=0, lt=0.5, description="Share held out.")
    eval_every: int | None = Field(
        default=None, ge=1, description="Steps between evals (default: 200 encoder, 50 causal)."
    )
    patience: int = Field(default=4, ge=1, description="Evals without gain before stopping.")
    checkpoint_every: int | None = Field(
        default=None, ge=1, description="Steps between checkpoints (default: as --eval-every)."
    )
    seed: int = Field(default=0, description="Seeds the split, the head and the batch order.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="bf16 autocast (auto: where the CPU has bf16 instructions)."
    )
    freeze_embeddings: bool = Field(
        default=True, description="Keep the word-embedding matrix fixed (faster, same accuracy)."
    )
    limit: int | None = Field(default=None, ge=10, description="Train on this many rows.")
    instruction: str | None = Field(
        default=None,
        description="The classification question (teacher labels, and rows for a chat base); "
        "default: the task's own, 'Classify the text.' for a file.",
    )
    text_field: str = Field(default="text", description="Text column of a file.")
    label_field: str = Field(default="label_text", description="Label column (or 'label').")

    def resolved(self, causal: bool) -> FinetuneConfig:
        """Every default that depends on the base's kind filled in (what a run records)."""
        method = self.method or ("lora" if causal else "full")
        lr = {(False, "full"): 1e-4, (False, "lora"): 5e-4, (True, "full"): 2e-5}
        every = self.eval_every or (50 if causal else 200)
        if not causal and self.max_length and self.max_length > 512:
            raise InputError("--max-length: an encoder reads at most 512 tokens")
        return self.model_copy(
            update={
                "method": method,
                "batch_size": self.batch_size or (8 if causal else 32),
                "lr": self.lr or lr.get((causal, method), 2e-4),
                "max_length": self.max_length or (512 if causal else 128),
                "eval_every": every,
                "checkpoint_every": self.checkpoint_every or every,
            }
        )

    @property
    def how(self) -> Literal["full", "lora"]:
        """The method, once resolved()."""
        assert self.method is not None
        return self.method

    @property
    def tokens(self) -> int:
        """max_length, once resolved()."""
        assert self.max_length is not None
        return self.max_length

    def loop(self, max_minutes: float | None, eval_at_start: bool = False) -> LoopConfig:
        assert self.batch_size and self.lr and self.eval_every and self.checkpoint_every
        return LoopConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_every=self.eval_every,
            patience=self.patience,
            checkpoint_every=self.checkpoint_every,
            max_minutes=max_minutes,
            seed=self.seed,
            eval_at_start=eval_at_start,
        )


@dataclass
class FinetuneResult:
    """What `slmkit.finetune` made: the registered model, its files, and the run's figures."""

    model_id: str
    path: Path
    metrics: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)


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


def _data_sha(data: str) -> str | None:
    from slmkit.catalog.store import file_sha256

    return file_sha256(Path(data)) if Path(data).is_file() else None


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


def _check_resume(cfg: FinetuneConfig, run_dir: Path, resume: bool, force: bool) -> None:
    saved = run_dir / "run.json"
    if resume:
        if not saved.is_file():
            raise InputError(f"nothing to resume for {cfg.out!r}: no run in {run_dir}")
        before = json.loads(saved.read_text())
        if before != cfg.model_dump(mode="json"):
            changed = sorted(
                k for k, v in cfg.model_dump(mode="json").items() if before.get(k) != v
            )
            raise InputError(f"--resume needs the same settings; changed: {', '.join(changed)}")
        return
    if (run_dir / "state.pt").is_file() and not force:
        raise InputError(
            f"an interrupted run of {cfg.out!r} has a checkpoint in {run_dir}: pass --resume to "
            "continue it, or --force to start over"
        )
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    saved.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))


def finetune(
    cfg: FinetuneConfig,
    *,
    store: Store | None = None,
    resume: bool = False,
    force: bool = False,
    max_minutes: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    label_progress: Callable[[int], Any] | None = None,
) -> FinetuneResult:
    """Train, evaluate on the held-out rows (and the task's test split), register as cfg.out."""
    from slmkit.runtime.encoder import import_torch

    torch = import_torch()
    store = store or Store()
    t0 = time.perf_counter()
    store.check_new_id(cfg.out, force=force)
    causal = causal_base(cfg.base, store)
    cfg = cfg.resolved(causal is not None)
    if causal is not None:
        return _finetune_causal(cfg, store, *causal, resume, force, max_minutes, progress)
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
    _check_resume(cfg, run_dir, resume, force)
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
        **_loop_metrics(cfg, state),
        "teacher_s": round(t_label, 1) if cfg.teacher else None,
    }
    if data.test is not None:
        metrics.update(_test_metrics(model, tokenizer, data, cfg.tokens))
    metrics["total_s"] = round(time.perf_counter() - t0, 1)
    result = _register(cfg, store, model, tokenizer, base, data, metrics, force)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


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


def _finetune_causal(
    cfg: FinetuneConfig,
    store: Store,
    entry: ModelEntry,
    path: Path,
    resume: bool,
    force: bool,
    max_minutes: float | None,
    progress: Callable[[Progress], None] | None,
) -> FinetuneResult:
    """LoRA (or full) on instruction/response rows; merged, exported to F16 GGUF, registered."""
    import torch

    from slmkit.train import causal

    t0 = time.perf_counter()
    if cfg.teacher or cfg.unlabeled:
        raise InputError(
            "--teacher/--unlabeled distil into an encoder classifier; a causal base learns "
            "from the responses in DATA"
        )
    data = causal.load_pairs(
        cfg.data,
        holdout=cfg.holdout,
        seed=cfg.seed,
        limit=cfg.limit,
        text_field=cfg.text_field,
        label_field=cfg.label_field,
        instruction=cfg.instruction,
    )
    run_dir = store.root / "runs" / cfg.out
    _check_resume(cfg, run_dir, resume, force)
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
        "train_rows": len(train.ids),
        "dropped_rows": dropped,
        "held_out_rows": len(held.ids),
        "base_token_accuracy": round(state.history[0]["held_accuracy"], 4),
        "held_token_accuracy": round(state.best, 4),
        **_loop_metrics(cfg, state),
        "total_s": round(time.perf_counter() - t0, 1),
    }
    model = causal.merged(model, cfg.how)
    result = _register_causal(cfg, store, entry, path, model, metrics, force)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


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


def _loop_metrics(cfg: FinetuneConfig, state: LoopState) -> dict[str, Any]:
    rate = state.step * cfg.loop(None).batch_size / max(state.elapsed_s, 1e-9)
    return {
        "steps": state.step,
        "best_step": state.best_step,
        "stopped": state.stopped,
        "train_s": round(state.elapsed_s, 1),
        "rows_per_s": round(rate, 2),
    }


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

    name = f"{Path(entry.filename).stem.split('.')[0]}.{cfg.out}.F16.gguf"
    staging = store.staging_dir(cfg.out)
    try:
        file = export_gguf(model, path, staging / name)
        lineage = {
            "base": cfg.base,
            "data": cfg.data,
            "data_sha256": _data_sha(cfg.data),
            "method": f"causal-{cfg.how}",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config": cfg.model_dump(mode="json"),
            "metrics": metrics,
            "parent": entry.lineage,
        }
        new = entry.model_copy(
            update={
                "id": cfg.out,
                "quantization": "F16",
                "filename": name,
                "size_bytes": file.stat().st_size,
                "sha256": None,
                "sources": (LocalSource(path=str(store.model_dir(cfg.out) / name)),),
                "description": f"{cfg.base} fine-tuned on {Path(cfg.data).name} ({cfg.how}).",
                "imported": True,
                "lineage": lineage,
            }
        )
        final = store.register_dir(new, staging, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FinetuneResult(cfg.out, final / name, metrics, lineage)


def use_bf16(precision: str) -> bool:
    """bf16 autocast when asked, or (auto) when the CPU has native bf16 dot products, which
    about doubles training rows/s here (docs/benchmarks.md)."""
    if precision != "auto":
        return precision == "bf16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
    base: Path,
    data: TrainData,
    metrics: dict[str, Any],
    force: bool,
) -> FinetuneResult:
    from slmkit.runtime.encoder import read_config
    from slmkit.train.encoder import save_model

    staging = store.staging_dir(cfg.out)
    try:
        save_model(model, tokenizer, staging, cfg.how)
        config = read_config(staging)
        lineage = {
            "base": cfg.base,
            "data": data.name,
            "data_sha256": _data_sha(cfg.data),
            "method": ("distill-" if cfg.teacher else "") + cfg.how,
            "teacher": cfg.teacher,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config": cfg.model_dump(mode="json"),
            "metrics": metrics,
        }
        size = (staging / "model.safetensors").stat().st_size
        entry = ModelEntry(
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
            size_bytes=size,
            sources=(LocalSource(path=str(store.model_dir(cfg.out))),),
            kind="classifier",
            labels=data.classes,
            description=f"Fine-tuned from {cfg.base} on {Path(data.name).name} ({cfg.how}).",
            imported=True,
            lineage=lineage,
        )
        path = store.register_dir(entry, staging, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FinetuneResult(cfg.out, path, metrics, lineage)


def _license(base: str) -> str:
    return "apache-2.0" if base in ENCODER_ALIASES else "see base model"


def result_dict(res: FinetuneResult) -> dict[str, Any]:
    out = asdict(res)
    out["path"] = str(res.path)
    return out
