"""Measure a task on a dataset: quality (accuracy/F1, ROUGE, validity) and cost
(latency p50/p95, items/s, peak RSS), as one JSON-able dict."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import InputError

Progress = Callable[[int], None]


@dataclass
class Timer:
    """Per-item latencies (a batch's time is shared by its items)."""

    per_item: list[float] = field(default_factory=list)
    total: float = 0.0

    def run(
        self,
        fn: Callable[[list[Any]], list[Any]],
        items: list[Any],
        batch: int,
        progress: Progress | None = None,
    ) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(items), batch):
            part = items[start : start + batch]
            t0 = time.perf_counter()
            out.extend(fn(part))
            dt = time.perf_counter() - t0
            self.total += dt
            self.per_item.extend([dt / len(part)] * len(part))
            if progress:
                progress(len(part))
        return out

    def report(self, n: int) -> dict[str, float]:
        lat = np.asarray(self.per_item) * 1000
        return {
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
            "items_per_s": round(n / self.total, 3) if self.total else 0.0,
        }


def classification_metrics(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(labels)
    per_class = f1_score(gold, pred, labels=labels, average=None, zero_division=0)
    majority = max(labels, key=lambda lb: sum(g == lb for g in gold))
    return {
        "accuracy": round(float(accuracy_score(gold, pred)), 4),
        "macro_f1": round(
            float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)), 4
        ),
        "f1_per_label": {lb: round(float(f), 4) for lb, f in zip(labels, per_class, strict=True)},
        "majority_baseline": round(sum(g == majority for g in gold) / len(gold), 4),
        "labels": labels,
        "confusion_matrix": confusion_matrix(gold, pred, labels=labels).tolist(),
    }


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (Google's rouge-score, with stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
    return {
        k: round(float(np.mean([s[k].fmeasure for s in scores])), 4)
        for k in ("rouge1", "rouge2", "rougeL")
    }


# --- extraction gold for the built-in `extract_sms` task ------------------------------------
SMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spam": {"type": "boolean"},
        "phone_number": {"type": ["string", "null"]},
        "mentions_prize": {"type": "boolean"},
    },
    "required": ["spam", "phone_number", "mentions_prize"],
    "additionalProperties": False,
}
_PHONE = re.compile(r"(?<!\d)(\+?\d[\d ]{8,}\d)(?!\d)")
_PRIZE = re.compile(r"\b(prize|won|win|winner|award|reward|cash|claim)\b", re.I)


def sms_gold(text: str, label: str) -> dict[str, Any]:
    """Reference fields: spam from the dataset label, the others by rule from the text."""
    m = _PHONE.search(text)
    return {
        "spam": label == "spam",
        "phone_number": re.sub(r"\D", "", m.group(1)) if m else None,
        "mentions_prize": bool(_PRIZE.search(text)),
    }


def field_matches(pred: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool]:
    out = {}
    for k, g in gold.items():
        p = pred.get(k)
        if k == "phone_number":
            p = re.sub(r"\D", "", p) if isinstance(p, str) else None
            p = p or None
        out[k] = p == g
    return out


def ensure_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise InputError(f"{name} must be at least 1")


def model_path_or_id(model: str) -> str | Path:
    return Path(model) if model.endswith(".gguf") else model
