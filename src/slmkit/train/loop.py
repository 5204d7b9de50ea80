"""The training loop: bucketed batches, AdamW with linear warm-up/decay, held-out evaluation,
early stopping, a wall-clock budget and checkpoints an interrupted run resumes from.

Written here rather than using transformers' Trainer because a run stopped by `--max-minutes`
or a kill must resume to the same result: that needs the batch order (length buckets from the
seed), the RNG state and the early-stopping state in one checkpoint of ours, and the loop
itself is short.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import InputError

STATE = "state.pt"
BEST = "best.pt"


@dataclass(frozen=True)
class LoopConfig:
    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    eval_every: int = 200
    patience: int = 4
    checkpoint_every: int = 200
    max_minutes: float | None = None
    seed: int = 0
    eval_at_start: bool = False  # measure the untrained model first (the figure to beat)


@dataclass
class LoopState:
    step: int = 0
    elapsed_s: float = 0.0
    best: float = -1.0
    best_step: int = 0
    bad_evals: int = 0
    stopped: str = ""
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Progress:
    """What a progress bar shows after each step."""

    step: int
    total: int
    loss: float
    rows_per_s: float
    held_accuracy: float | None


def bucket_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffle, sort by length inside windows of 50 batches, cut, shuffle the batches: padding
    stays small and every epoch's order follows from (seed, epoch) alone."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _trainable(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class TrainLoop:
    """Drive one model: `loss_fn(model, idx)` on a batch of row indices, `eval_fn(model)` ->
    held-out accuracy. `run_dir` holds the checkpoints."""

    def __init__(
        self,
        model: Any,
        lengths: np.ndarray,
        loss_fn: Callable[[Any, np.ndarray], Any],
        eval_fn: Callable[[Any], float],
        cfg: LoopConfig,
        run_dir: Path,
    ) -> None:
        import torch
        from transformers import get_linear_schedule_with_warmup

        self.torch, self.model, self.lengths = torch, model, lengths
        self.loss_fn, self.eval_fn, self.cfg, self.run_dir = loss_fn, eval_fn, cfg, run_dir
        self.per_epoch = len(bucket_batches(lengths, cfg.batch_size, cfg.seed, 0))
        self.total = max(1, math.ceil(cfg.epochs * self.per_epoch))
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = get_linear_schedule_with_warmup(
            self.opt, int(cfg.warmup * self.total), self.total
        )
        self.state = LoopState()
        self.best_weights = _trainable(model)

    # --- checkpoints ----------------------------------------------------------------------
    def checkpoint(self) -> None:
        _save(self.best_weights, self.run_dir / BEST)
        _save(
            {
                "weights": _trainable(self.model),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "rng": self.torch.get_rng_state(),
                "state": json.dumps(asdict(self.state)),
            },
            self.run_dir / STATE,
        )

    def resume(self) -> None:
        """Continue from the last checkpoint in run_dir."""
        path = self.run_dir / STATE
        if not path.is_file():
            raise InputError(f"nothing to resume: no checkpoint in {self.run_dir}")
        ck = self.torch.load(path, weights_only=True)
        self.model.load_state_dict(ck["weights"], strict=False)
        self.opt.load_state_dict(ck["opt"])
        self.sched.load_state_dict(ck["sched"])
        self.torch.set_rng_state(ck["rng"])
        self.state = LoopState(**json.loads(ck["state"]))
        self.best_weights = self.torch.load(self.run_dir / BEST, weights_only=True)

    # --- the loop ---------------------------------------------------------------------------
    def _evaluate(self) -> float:
        self.model.eval()
        acc = float(self.eval_fn(self.model))
        self.model.train()
        st = self.state
        st.history.append({"step": st.step, "held_accuracy": acc})
        if acc > st.best:
            st.best, st.best_step, st.bad_evals = acc, st.step, 0
            self.best_weights = _trainable(self.model)
        else:
            st.bad_evals += 1
        return acc

    def _batches_from(self, step: int) -> Any:
        epoch, skip = divmod(step, self.per_epoch)
        while True:
            batches = bucket_batches(self.lengths, self.cfg.batch_size, self.cfg.seed, epoch)
            yield from batches[skip:]
            epoch, skip = epoch + 1, 0

    def _out_of_time(self, started: float) -> bool:
        limit = self.cfg.max_minutes
        return limit is not None and self.state.elapsed_s + time.monotonic() - started > limit * 60

    def run(self, progress: Callable[[Progress], None] | None = None) -> LoopState:
        """Train to the end, early stop or time limit; leave the best weights in the model."""
        st, cfg = self.state, self.cfg
        self.model.train()
        started, rows, t_rows = time.monotonic(), 0, time.monotonic()
        acc: float | None = st.history[-1]["held_accuracy"] if st.history else None
        if cfg.eval_at_start and not st.history:
            acc = self._evaluate()
        batches = self._batches_from(st.step)
        while st.step < self.total and not st.stopped:
            if self._out_of_time(started):
                st.stopped = "time limit"
                break
            idx = next(batches)
            loss = self.loss_fn(self.model, idx)
            loss.backward()
            self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            st.step += 1
            rows += len(idx)
            if st.step % cfg.eval_every == 0 or st.step == self.total:
                acc = self._evaluate()
                if st.bad_evals >= cfg.patience:
                    st.stopped = "early stop"
            if st.step % cfg.checkpoint_every == 0:
                st.elapsed_s += time.monotonic() - started
                started = time.monotonic()
                self.checkpoint()
            if progress:
                rate = rows / max(time.monotonic() - t_rows, 1e-9)
                progress(Progress(st.step, self.total, float(loss.item()), rate, acc))
        st.elapsed_s += time.monotonic() - started
        if not st.history or st.history[-1]["step"] != st.step:
            self._evaluate()
        st.stopped = st.stopped or "done"
        self.model.load_state_dict(self.best_weights, strict=False)
        return st
