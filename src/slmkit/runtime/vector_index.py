"""Approximate nearest-neighbour search for knowledge bases: an HNSW graph (usearch: a
maintained single-file C++ library with Python wheels, on-disk save and load) over
L2-normalised float32 vectors with the cosine metric, keyed by integer ids.
docs/benchmarks.md compares it with exact search and sqlite-vec at 100k chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import BackendUnavailableError

CONNECTIVITY = 16  # graph degree (M)
EXPANSION_ADD = 128  # ef_construction
EXPANSION_SEARCH = 64  # ef at query time


def _usearch() -> Any:
    # onnxruntime first: its native module segfaults on import when usearch's is already
    # loaded (usearch 2.26.6, onnxruntime 1.32: `python -c "import usearch.index; import
    # onnxruntime"` dies with SIGSEGV; the other order works). onnxruntime is a dependency.
    import onnxruntime  # noqa: F401

    try:
        from usearch import index
    except ImportError as e:  # a broken install: usearch is a dependency
        raise BackendUnavailableError(f"knowledge bases need usearch ({e})") from e
    return index


class VectorIndex:
    """Cosine-similarity search over vectors added with integer ids."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    @property
    def ndim(self) -> int:
        return int(self.raw.ndim)

    def __len__(self) -> int:
        return len(self.raw)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self.raw.add(ids.astype(np.uint64), np.ascontiguousarray(vecs, dtype=np.float32))

    def remove(self, ids: np.ndarray) -> None:
        self.raw.remove(ids.astype(np.uint64))

    def search(self, vec: np.ndarray, k: int) -> dict[int, float]:
        """Up to k ids, best first, with their cosine similarity to `vec`."""
        if len(self.raw) == 0:
            return {}
        m = self.raw.search(np.asarray(vec, dtype=np.float32), min(k, len(self.raw)))
        return {int(key): 1.0 - float(d) for key, d in zip(m.keys, m.distances, strict=True)}

    def save(self, path: Path) -> None:
        self.raw.save(str(path))


def new_index(dim: int) -> VectorIndex:
    index = _usearch()
    return VectorIndex(
        index.Index(
            ndim=dim,
            metric="cos",
            dtype="f32",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
    )


def load_index(path: Path, dim: int) -> VectorIndex:
    """The index saved at `path` (read into memory: it is rewritten on every change)."""
    vi = new_index(dim)
    vi.raw.load(str(path))
    return vi
