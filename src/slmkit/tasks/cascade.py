"""Cascades: answer with a small classifier when it is confident, pass the rest to a larger
model (local or an endpoint).

The small model's probabilities are calibrated by temperature scaling fitted on a labelled
file (one parameter, least negative log-likelihood, Guo et al. 2017), then an input goes to
the large model when the small one's top probability is under the threshold. The threshold
is chosen on the same labelled file: the lowest share escalated whose accuracy reaches the
target (by default the large model's accuracy there, less one point).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slmkit.errors import InputError
from slmkit.tasks.classify import Classifier, Prediction

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))


BATCH = 16


def predict_all(
    clf: Any, texts: Sequence[str], progress: Callable[[int], None] | None = None
) -> list[Any]:
    """A classifier's (or a cascade's) predictions in batches of 16, as `slm classify` runs
    them, reporting progress."""
    out: list[Any] = []
    for i in range(0, len(texts), BATCH):
        part = list(texts[i : i + BATCH])
        out.extend(clf.predict(part))
        if progress:
            progress(len(part))
    return out


def _probs(preds: Sequence[Prediction], labels: Sequence[str]) -> np.ndarray:
    return np.array([[p.probs.get(lb, 0.0) for lb in labels] for p in preds], dtype=np.float64)


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities: softmax(log p / T)."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def fit_temperature(probs: np.ndarray, gold_idx: np.ndarray) -> float:
    """The temperature (on a log grid, 0.05..20) with the least NLL on the labelled rows."""
    rows = np.arange(len(gold_idx))
    nll = [-np.log(np.clip(scale(probs, t)[rows, gold_idx], 1e-12, 1)).mean() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    accuracy: float  # of the cascade on the labelled rows
    escalated: float  # share sent to the large model
    small_accuracy: float
    large_accuracy: float
    target: float
    reached: bool


def choose_threshold(
    confidence: np.ndarray,
    small_ok: np.ndarray,
    large_ok: np.ndarray,
    target: float | None = None,
) -> ThresholdChoice:
    """The threshold with the least escalation whose cascade accuracy reaches `target`
    (default: the large model's accuracy less 0.01); if none does, the most accurate one."""
    large_acc = float(large_ok.mean())
    goal = large_acc - 0.01 if target is None else target
    best: tuple[float, float, float] | None = None
    most_accurate = (-1.0, 0.0, 1.0)
    for t in [*sorted(set(confidence.tolist())), float("inf")]:
        escalate = confidence < t
        acc = float(np.where(escalate, large_ok, small_ok).mean())
        share = float(escalate.mean())
        if acc > most_accurate[0] + 1e-12:
            most_accurate = (acc, share, t)
        if acc >= goal - 1e-12 and (best is None or share < best[1]):
            best = (acc, share, t)
    acc, share, t = best or most_accurate
    return ThresholdChoice(
        min(t, 1.0), acc, share, float(small_ok.mean()), large_acc, goal, best is not None
    )


@dataclass
class CascadePrediction:
    label: str
    probs: dict[str, float]
    escalated: bool
    confidence: float  # the small model's calibrated top probability
    small_label: str


@dataclass
class Cascade:
    """small -> large. `predict` runs the small model on everything and the large one only
    on what the small one is unsure of; `stats` keeps counts and time per item."""

    small: Classifier
    large: Classifier
    labels: tuple[str, ...]
    threshold: float = 0.9
    temperature: float = 1.0
    stats: dict[str, Any] = field(default_factory=lambda: {"n": 0, "escalated": 0, "seconds": 0.0})

    def calibrate(
        self,
        texts: Sequence[str],
        gold: Sequence[str],
        target: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ThresholdChoice:
        """Fit the temperature and choose the threshold on labelled rows (runs both models;
        `progress` is told of each batch, 2 x len(texts) in all)."""
        unknown = sorted(set(gold) - set(self.labels))
        if unknown:
            raise InputError(f"labelled rows use labels the cascade lacks: {unknown}")
        gold_idx = np.array([self.labels.index(g) for g in gold])
        probs = _probs(predict_all(self.small, texts, progress), self.labels)
        self.temperature = fit_temperature(probs, gold_idx)
        calibrated = scale(probs, self.temperature)
        large = predict_all(self.large, texts, progress)
        choice = choose_threshold(
            calibrated.max(axis=1),
            calibrated.argmax(axis=1) == gold_idx,
            np.array([p.label == g for p, g in zip(large, gold, strict=True)]),
            target,
        )
        self.threshold = choice.threshold
        return choice

    def predict(self, texts: Sequence[str]) -> list[CascadePrediction]:
        t0 = time.perf_counter()
        probs = scale(_probs(self.small.predict(list(texts)), self.labels), self.temperature)
        conf = probs.max(axis=1)
        unsure = [i for i, c in enumerate(conf) if c < self.threshold]
        large = self.large.predict([texts[i] for i in unsure]) if unsure else []
        out = [
            CascadePrediction(
                self.labels[int(row.argmax())],
                {lb: round(float(p), 6) for lb, p in zip(self.labels, row, strict=True)},
                False,
                float(c),
                self.labels[int(row.argmax())],
            )
            for row, c in zip(probs, conf, strict=True)
        ]
        for i, pred in zip(unsure, large, strict=True):
            out[i] = CascadePrediction(
                pred.label, pred.probs, True, float(conf[i]), out[i].small_label
            )
        self.stats["n"] += len(texts)
        self.stats["escalated"] += len(unsure)
        self.stats["seconds"] += time.perf_counter() - t0
        return out


def member(name: str, labels: Sequence[str], instruction: str, timeout: float = 60.0) -> Any:
    """A cascade stage by name: an endpoint URL, a classifier from `slm finetune`, or a
    language model used zero-shot (calibrated)."""
    from slmkit.catalog.store import Store
    from slmkit.tasks.endpoint import Endpoint, EndpointClassifier, is_endpoint
    from slmkit.tasks.finetuned import classifier_entry, load_classifier

    if is_endpoint(name):
        return EndpointClassifier(Endpoint.parse(name, timeout=timeout), labels, instruction)
    if classifier_entry(name, Store()):
        clf = load_classifier(name)
        clf.check_labels(labels)
        return clf
    from slmkit.loading import load
    from slmkit.tasks.classify import make_classifier

    return make_classifier("zeroshot", labels=labels, model=load(name), instruction=instruction)


def make_cascade(
    models: str, labels: Sequence[str], instruction: str, *, timeout: float = 60.0
) -> Cascade:
    """`SMALL,LARGE` -> a Cascade (threshold 0.9 until calibrated)."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    if len(names) != 2:
        raise InputError(f"a cascade is SMALL,LARGE (two models), got {models!r}")
    if len(labels) < 2:
        raise InputError("a cascade needs at least two labels")
    small, large = (member(n, labels, instruction, timeout) for n in names)
    return Cascade(small, large, tuple(labels))
