"""A fine-tuning run's settings and result, and what both runs (encoder, causal) share:
resume checks, loop figures, the bf16 rule."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from slmkit.errors import InputError
from slmkit.train.loop import LoopConfig, LoopState

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
    summary_input: Literal["document", "extract"] = Field(
        default="document",
        description="Summaries: what the prompt holds: the document (its lead, cut to "
        "--max-length) for `slm summarize`, or the extractive pick for --method hybrid.",
    )
    max_words: int = Field(
        default=60, ge=5, description="Summaries: the prompt's word limit (as `slm summarize`)."
    )
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


def check_resume(cfg: FinetuneConfig, run_dir: Path, resume: bool, force: bool) -> None:
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


def loop_metrics(cfg: FinetuneConfig, state: LoopState) -> dict[str, Any]:
    rate = state.step * cfg.loop(None).batch_size / max(state.elapsed_s, 1e-9)
    return {
        "steps": state.step,
        "best_step": state.best_step,
        "stopped": state.stopped,
        "train_s": round(state.elapsed_s, 1),
        "rows_per_s": round(rate, 2),
    }


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


def result_dict(res: FinetuneResult) -> dict[str, Any]:
    out = asdict(res)
    out["path"] = str(res.path)
    return out
