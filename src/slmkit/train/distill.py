"""Teacher labels for distillation: a larger local SLM's calibrated zero-shot probabilities,
computed with the batched scorer and cached in the store in chunks, so a second run (or a
run interrupted while labelling) does not pay for labels it already has."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from slmkit.catalog.store import Store, atomic_writer

CHUNK = 128


def _key(teacher_sha: str, labels: Sequence[str], instruction: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps([teacher_sha, list(labels), instruction]).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def teacher_probs(
    teacher: str,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    instruction: str,
    store: Store,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(len(texts), len(labels)) probabilities in `labels` order from the teacher model,
    which is loaded only if some chunk is not cached, and closed afterwards."""
    from slmkit.loading import load
    from slmkit.tasks.classify import make_classifier

    store.require(teacher)  # a clear error before anything else
    sha = (store.manifest(teacher) or {}).get("sha256", teacher)
    cache = store.root / "cache" / "teacher"
    model, clf = None, None
    parts = []
    try:
        for start in range(0, len(texts), CHUNK):
            chunk = list(texts[start : start + CHUNK])
            path = cache / f"{_key(sha, labels, instruction, chunk)}.npy"
            if path.is_file():
                probs = np.load(path)
            else:
                if clf is None:
                    model = load(teacher, store=store, n_ctx=2048)
                    clf = make_classifier(
                        "zeroshot", labels=labels, model=model, instruction=instruction
                    )
                probs = np.array([[p.probs[lb] for lb in labels] for p in clf.predict(chunk)])
                _save(path, probs)
            parts.append(probs)
            if progress:
                progress(len(chunk))
    finally:
        if model is not None:
            model.close()
    return np.concatenate(parts).astype(np.float32)


def _save(path: Path, arr: np.ndarray) -> None:
    with atomic_writer(path) as f:
        np.save(f, arr)
