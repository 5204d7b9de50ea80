"""Sentence-embedding runtimes: all-MiniLM-L6-v2 as int8 ONNX through onnxruntime (no torch)
or fp32 through transformers + torch; mean-pooled, L2-normalised. They take texts already
checked (tasks/embed.py checks and names the asset folders)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from slmkit.errors import BackendUnavailableError

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained with max_seq_length 256


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: np.ndarray = pooled / np.clip(norms, 1e-12, None)
    return out


class OnnxSentenceEncoder:
    """An ONNX sentence encoder, tokenized with its tokenizer.json."""

    def __init__(
        self, onnx_file: Path, tokenizer_json: Path, *, n_threads: int, batch_size: int = 64
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = n_threads
        self.session = ort.InferenceSession(
            str(onnx_file), opts, providers=["CPUExecutionProvider"]
        )
        self.batch_size = batch_size
        self.dim = 384

    def embed(self, batch: Sequence[str]) -> np.ndarray:
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
            out.append((idx, mean_pool(hidden, mask)))
        result = np.zeros((len(batch), self.dim), dtype=np.float32)
        for idx, vecs in out:
            result[idx] = vecs
        return result


class TorchSentenceEncoder:
    """A Hugging Face sentence encoder folder through transformers + torch."""

    def __init__(self, folder: Path, *, n_threads: int, batch_size: int = 64) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise BackendUnavailableError(
                "fp32 embeddings need torch and transformers: pip install 'slmkit[torch]' "
                "(or use the default int8 ONNX embedder)"
            ) from e
        torch.set_num_threads(n_threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval()
        self.batch_size = batch_size

    def embed(self, batch: Sequence[str]) -> np.ndarray:
        vecs = []
        with self.torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                enc = self.tokenizer(
                    list(batch[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state.numpy()
                vecs.append(mean_pool(hidden, enc["attention_mask"].numpy()))
        return np.concatenate(vecs)


def token_spans(tokenizer_json: Path) -> Callable[[str], list[tuple[int, int]]]:
    """The encoder's tokens of a text as character spans (no truncation, no special tokens):
    what knowledge bases chunk by, so a chunk fits the encoder's window."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()

    def spans(text: str) -> list[tuple[int, int]]:
        return [tuple(o) for o in tok.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]

    return spans
