"""Classifiers made by `slm finetune` (and `slm quantize`): registered store models of kind
'classifier', run by the encoder runtime (PyTorch, or onnxruntime for ONNX exports)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slmkit.catalog.entries import ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import InputError, LabelError
from slmkit.runtime.encoder import EncoderRunner, open_encoder
from slmkit.tasks.classify import Prediction, predictions, softmax
from slmkit.tasks.data import check_texts


class EncoderClassifier:
    """A fine-tuned sequence classifier: one Prediction per text, labels from its config."""

    def __init__(self, runner: EncoderRunner, name: str = "") -> None:
        self.runner = runner
        self.labels = runner.labels
        self.name = name

    @classmethod
    def from_path(cls, path: Path, *, n_threads: int | None = None) -> EncoderClassifier:
        return cls(open_encoder(path, n_threads=n_threads), name=Path(path).name)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        batch = check_texts(texts)
        return predictions(self.labels, softmax(self.runner.logits(batch)))

    def check_labels(self, wanted: Sequence[str]) -> None:
        """LabelError unless `wanted` is this classifier's label set (any order)."""
        if set(wanted) != set(self.labels):
            raise LabelError(
                f"{self.name or 'this classifier'} was trained on labels "
                f"{', '.join(self.labels)}; the task has {', '.join(wanted)}"
            )


def classifier_entry(model_id: str, store: Store) -> ModelEntry | None:
    """The store entry if model_id names an installed fine-tuned classifier, else None."""
    try:
        entry = store.get(model_id)
    except InputError:
        return None
    return entry if entry.kind == "classifier" and store.path(model_id) else None


def load_classifier(model_id: str, store: Store | None = None) -> EncoderClassifier:
    """Load a classifier registered in the store by `slm finetune` or `slm quantize`."""
    store = store or Store()
    entry, path = store.require(model_id)
    if entry.kind != "classifier":
        raise InputError(f"{model_id!r} is not a fine-tuned classifier (kind {entry.kind})")
    clf = EncoderClassifier.from_path(path.parent, n_threads=store.settings.n_threads)
    clf.name = model_id
    return clf
