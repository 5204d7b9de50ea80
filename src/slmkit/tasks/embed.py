"""Sentence embeddings: all-MiniLM-L6-v2 as int8 ONNX (default, no torch) or fp32 (torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

from slmkit.catalog.assets import ASSET_ALIASES, MINILM_FP32, MINILM_INT8, asset_dir
from slmkit.catalog.store import Store
from slmkit.errors import BackendUnavailableError, InputError
from slmkit.tasks.data import check_texts

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained with max_seq_length 256


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: np.ndarray = pooled / np.clip(norms, 1e-12, None)
    return out


def _check(texts: Sequence[str]) -> list[str]:
    return check_texts(texts, "texts to embed")


class OnnxMiniLM:
    """int8 ONNX MiniLM through onnxruntime, tokenized with the model's tokenizer.json."""

    name = "minilm-int8"
    dim = 384

    def __init__(self, store: Store, *, pull: bool = False, batch_size: int = 64) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_dir = asset_dir(store, MINILM_INT8, pull=pull)
        tok_dir = asset_dir(store, MINILM_FP32, pull=pull)
        self.tokenizer = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = store.settings.n_threads
        self.session = ort.InferenceSession(
            str(onnx_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = _check(texts)
        out = []
        # Sort by length so padding inside each batch stays small.
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer.encode_batch([batch[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feeds)[0]
            out.append((idx, _mean_pool(hidden, mask)))
        result = np.zeros((len(batch), self.dim), dtype=np.float32)
        for idx, vecs in out:
            result[idx] = vecs
        return result


class TorchMiniLM:
    """fp32 MiniLM through transformers + torch (install the `torch` extra)."""

    name = "minilm-fp32"
    dim = 384

    def __init__(self, store: Store, *, pull: bool = False, batch_size: int = 64) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise BackendUnavailableError(
                "fp32 embeddings need torch and transformers: pip install 'slmkit[torch]' "
                "(or use the default int8 ONNX embedder)"
            ) from e
        path = asset_dir(store, MINILM_FP32, pull=pull)
        torch.set_num_threads(store.settings.n_threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = _check(texts)
        vecs = []
        with self.torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                enc = self.tokenizer(
                    batch[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state.numpy()
                vecs.append(_mean_pool(hidden, enc["attention_mask"].numpy()))
        return np.concatenate(vecs)


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
