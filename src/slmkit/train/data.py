"""Training data for `slm finetune`: a built-in task's train split or a labelled JSONL/CSV,
checked in full before any long work starts, with a stratified held-out split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from slmkit.errors import DataError, LabelError
from slmkit.tasks.classify import check_labels
from slmkit.tasks.data import ClassificationTask, OnError, builtin_task, read_rows


@dataclass
class TrainData:
    """Rows to train on, rows held out for early stopping, and a test split if the task has one."""

    name: str
    classes: tuple[str, ...]
    texts: list[str]
    labels: list[str]
    held_texts: list[str]
    held_labels: list[str]
    test: tuple[list[str], list[str]] | None = None
    skipped: list[tuple[int, str]] = field(default_factory=list)
    instruction: str = "Classify the text."


def _read_file(
    path: Path, text_field: str, label_field: str, on_error: OnError
) -> tuple[list[str], list[str], list[tuple[int, str]]]:
    first = read_rows(path, required=(), on_error="fail").rows[0]
    if label_field not in first and label_field == "label_text" and "label" in first:
        label_field = "label"
    res = read_rows(path, required=(text_field, label_field), on_error=on_error)
    texts = [str(r[text_field]) for r in res.rows]
    labels = [str(r[label_field]) for r in res.rows]
    return texts, labels, res.errors


def split_holdout(
    texts: list[str], labels: list[str], fraction: float, seed: int
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Stratified when every class has two rows or more; returns train then held-out."""
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    n_held = max(len(counts), round(len(texts) * fraction))
    if n_held >= len(texts):
        raise DataError(f"too few rows ({len(texts)}) to hold out {n_held} for evaluation")
    strat = labels if min(counts.values()) >= 2 else None
    tx, hx, ty, hy = train_test_split(
        texts, labels, test_size=n_held, random_state=seed, stratify=strat
    )
    return list(tx), list(ty), list(hx), list(hy)


def load_train_data(
    data: str,
    *,
    text_field: str = "text",
    label_field: str = "label_text",
    holdout: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    on_error: OnError = "fail",
) -> TrainData:
    """Read and check everything up front: a bad row, one class or an unknown label fails here."""
    test = None
    skipped: list[tuple[int, str]] = []
    instruction = "Classify the text."
    if Path(data).suffix.lower() in (".jsonl", ".csv"):
        texts, labels, skipped = _read_file(Path(data), text_field, label_field, on_error)
        classes = tuple(sorted(set(labels)))
    else:
        spec = builtin_task(data)
        if not isinstance(spec, ClassificationTask):
            raise DataError(
                f"{data} is not a classification task: an encoder base needs labels (summaries "
                "train a chat base: --base smollm2-135m-instruct)"
            )
        texts, labels = spec.load("train")
        test = spec.load("test")
        classes, instruction = spec.labels, spec.instruction
    if len(set(labels)) < 2:
        raise LabelError(
            f"{data}: every row has the label {labels[0]!r}; a classifier needs two classes or more"
        )
    check_labels(classes)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise LabelError(f"{data}: labels not in the task's label set: {', '.join(unknown[:5])}")
    if limit:
        texts, labels = _take(texts, labels, limit, seed)
    tx, ty, hx, hy = split_holdout(texts, labels, holdout, seed)
    return TrainData(str(data), classes, tx, ty, hx, hy, test, skipped, instruction)


def _take(texts: list[str], labels: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    import numpy as np

    if n >= len(texts):
        return texts, labels
    idx = sorted(np.random.default_rng(seed).permutation(len(texts))[:n].tolist())
    return [texts[i] for i in idx], [labels[i] for i in idx]
