"""Fine-tune an encoder (all-MiniLM-L6-v2, MobileBERT, any BERT-like folder) for sequence
classification, fully or with LoRA adapters (peft), on soft or hard targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slmkit.runtime.encoder import import_torch

Method = Literal["full", "lora"]


@dataclass
class Encoded:
    """Token ids of every text, kept unpadded; a batch is padded to its own longest row."""

    ids: list[list[int]]
    pad_id: int

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids])

    def batch(self, idx: Sequence[int] | np.ndarray) -> dict[str, Any]:
        import torch

        width = max(len(self.ids[i]) for i in idx)
        ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq = self.ids[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> Encoded:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return Encoded(enc["input_ids"], tokenizer.pad_token_id or 0)


def build_model(
    base: Path, classes: Sequence[str], method: Method, seed: int, lora_r: int = 8
) -> tuple[Any, Any]:
    """(tokenizer, model) with a fresh classification head for `classes`."""
    torch = import_torch()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    hf_logging.set_verbosity_error()  # "some weights newly initialized" is the point here
    hf_logging.disable_progress_bar()  # ours shows the run; theirs would interleave
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base),
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)},
    )
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        cfg = LoraConfig(
            task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.1
        )
        model = get_peft_model(model, cfg)
    return tokenizer, model


def soft_cross_entropy(logits: Any, targets: Any) -> Any:
    """Cross-entropy against a probability row per text (one-hot gold, teacher, or a mix)."""
    import torch

    return -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def predict_logits(model: Any, enc: Encoded, batch_size: int = 64) -> np.ndarray:
    """Logits in the input order, batches sorted by length."""
    import torch

    order = np.argsort(enc.lengths, kind="stable")
    out = None
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            logits = model(**enc.batch(idx)).logits.float().numpy()
            if out is None:
                out = np.zeros((len(order), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    assert out is not None
    return out


def save_model(model: Any, tokenizer: Any, folder: Path, method: Method) -> None:
    """A plain Hugging Face folder (LoRA merged in), safetensors weights + tokenizer."""
    if method == "lora":
        model = model.merge_and_unload()
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
