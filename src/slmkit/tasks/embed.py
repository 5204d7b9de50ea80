"""Sentence embeddings: all-MiniLM-L6-v2 as int8 ONNX (default, no torch) or fp32 (torch); the
runtimes are in runtime/embedders.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

from slmkit.catalog.assets import ASSET_ALIASES, MINILM_FP32, MINILM_INT8, asset_dir
from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.tasks.data import check_texts


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _check(texts: Sequence[str]) -> list[str]:
    return check_texts(texts, "texts to embed")


class OnnxMiniLM:
    """int8 ONNX MiniLM through onnxruntime (runtime/embedders.py), tokenized with the
    model's tokenizer.json."""

    name = "minilm-int8"
    dim = 384

    def __init__(self, store: Store, *, pull: bool = False, batch_size: int = 64) -> None:
        from slmkit.runtime.embedders import OnnxSentenceEncoder, token_spans

        onnx_dir = asset_dir(store, MINILM_INT8, pull=pull)
        tok_dir = asset_dir(store, MINILM_FP32, pull=pull)
        self.token_spans = token_spans(tok_dir / "tokenizer.json")
        self.runner = OnnxSentenceEncoder(
            onnx_dir / "model.onnx",
            tok_dir / "tokenizer.json",
            n_threads=store.settings.n_threads,
            batch_size=batch_size,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.runner.embed(_check(texts))


class TorchMiniLM:
    """fp32 MiniLM through transformers + torch (install the `torch` extra)."""

    name = "minilm-fp32"
    dim = 384

    def __init__(self, store: Store, *, pull: bool = False, batch_size: int = 64) -> None:
        from slmkit.runtime.embedders import TorchSentenceEncoder, token_spans

        folder = asset_dir(store, MINILM_FP32, pull=pull)
        self.token_spans = token_spans(folder / "tokenizer.json")
        self.runner = TorchSentenceEncoder(
            folder,
            n_threads=store.settings.n_threads,
            batch_size=batch_size,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.runner.embed(_check(texts))


class SlmEmbedder:
    """Mean-pooled hidden states of a GGUF language model (llama.cpp embedding mode)."""

    def __init__(self, model_id: str, store: Store) -> None:
        from slmkit.loading import load

        self.model = load(model_id, store=store, n_ctx=512)
        self.name = f"slm:{model_id}"
        self.dim = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.asarray(self.model.embed(_check(texts)), dtype=np.float32)
        self.dim = out.shape[1]
        return out


EmbedderName = Literal["minilm-int8", "minilm-fp32"]


def load_embedder(
    name: str = "minilm-int8", *, store: Store | None = None, pull: bool = False
) -> Embedder:
    """Load an embedder by name: 'minilm-int8' (default), 'minilm-fp32', or 'slm:MODEL_ID'
    (a catalog language model's own mean-pooled hidden states)."""
    store = store or Store()
    if name.startswith("slm:"):
        return SlmEmbedder(name.removeprefix("slm:"), store)
    asset = ASSET_ALIASES.get(name)
    if asset is MINILM_INT8:
        return OnnxMiniLM(store, pull=pull)
    if asset is MINILM_FP32:
        return TorchMiniLM(store, pull=pull)
    raise InputError(f"unknown embedder {name!r}: use minilm-int8, minilm-fp32 or slm:MODEL_ID")


def embed(
    texts: str | Sequence[str], *, model: str = "minilm-int8", store: Store | None = None
) -> np.ndarray:
    """Embed one text or many with a MiniLM embedder; returns an (n, 384) float32 array."""
    batch = [texts] if isinstance(texts, str) else list(texts)
    return np.asarray(load_embedder(model, store=store).embed(batch))
