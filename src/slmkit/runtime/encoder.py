"""Encoder models for sequence classification: a Hugging Face folder run by PyTorch
(transformers), or the same model exported to ONNX run by onnxruntime.

Both read the folder's `config.json` for the label names and `tokenizer.json` for tokens,
and return one row of logits per text. torch and transformers are imported only here.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from slmkit.errors import BackendUnavailableError, ModelFormatError

ENCODER_TYPES = (
    "bert",
    "mobilebert",
    "distilbert",
    "roberta",
    "xlm-roberta",
    "electra",
    "deberta-v2",
    "albert",
    "mpnet",
)
MAX_TOKENS = 256
# config.json flag written by `slm quantize --type int8-torch`: Linear layers become dynamic int8
# when the model loads (PyTorch cannot save dynamically quantized modules as safetensors).
TORCH_INT8_KEY = "slmkit_dynamic_int8"


def read_config(path: Path) -> dict[str, Any]:
    """A model folder's config.json; ModelFormatError when absent or unreadable."""
    try:
        data: dict[str, Any] = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelFormatError(f"{path} is not a Hugging Face model folder ({e})") from e
    return data


def is_encoder(config: dict[str, Any]) -> bool:
    return str(config.get("model_type", "")) in ENCODER_TYPES


def label_names(config: dict[str, Any]) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    return tuple(str(id2label[k]) for k in sorted(id2label, key=int))


def import_torch() -> Any:
    """torch with a clear error when the extra is missing."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError(
            "this needs torch and transformers: pip install 'slmkit[torch]'"
        ) from e
    return torch


class EncoderRunner(Protocol):
    labels: tuple[str, ...]

    def logits(self, texts: Sequence[str]) -> np.ndarray: ...


def _length_order(texts: Sequence[str]) -> list[int]:
    # Similar lengths share a batch, so dynamic padding stays small.
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))


class TorchEncoder:
    """A sequence-classification model run by transformers on the CPU."""

    def __init__(self, path: Path, *, n_threads: int | None = None, batch_size: int = 32) -> None:
        torch = import_torch()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if n_threads:
            torch.set_num_threads(n_threads)
        self.torch = torch
        self.config = read_config(path)
        self.labels = label_names(self.config)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        if self.config.get(TORCH_INT8_KEY):
            # Deprecated in favour of the separate torchao package, but still shipped and
            # working in the pinned torch (its quantized tensors warn likewise); not worth
            # another dependency for one call.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
        self.model = model
        self.batch_size = batch_size

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        order = _length_order(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        with self.torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                out[idx] = self.model(**enc).logits.float().numpy()
        return out


class OnnxEncoder:
    """The same model as `model.onnx` (fp32 or int8) through onnxruntime: no torch needed."""

    def __init__(self, path: Path, *, n_threads: int | None = None, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.config = read_config(path)
        self.labels = label_names(self.config)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        if n_threads:
            opts.intra_op_num_threads = n_threads
        self.session = ort.InferenceSession(
            str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.batch_size = batch_size

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        order = _length_order(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.zeros_like(ids),
            }
            out[idx] = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[
                0
            ]
        return out


def weights_file(folder: Path) -> Path:
    """The file holding a classifier folder's weights: model.onnx, else model.safetensors."""
    onnx = Path(folder) / "model.onnx"
    return onnx if onnx.is_file() else Path(folder) / "model.safetensors"


def open_encoder(path: Path, *, n_threads: int | None = None) -> EncoderRunner:
    """ONNX when the folder holds model.onnx, else PyTorch."""
    path = Path(path)
    if weights_file(path).suffix == ".onnx":
        return OnnxEncoder(path, n_threads=n_threads)
    return TorchEncoder(path, n_threads=n_threads)
