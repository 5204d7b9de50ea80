"""Tiny random-weight encoders built from a config (no downloads): a BERT and a MobileBERT
with a WordPiece tokenizer trained on the test's own texts, saved as Hugging Face folders."""

from __future__ import annotations

import json
import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GOOD = ["good", "great", "lovely", "fine", "superb", "happy", "bright"]
BAD = ["bad", "awful", "poor", "sad", "grim", "dull", "broken"]
FILLER = ["the", "movie", "was", "a", "day", "and", "it", "felt", "very", "quite", "so"]


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Learnable synthetic rows: the label follows which word list the key word comes from."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        key = rng.choice(GOOD if label == "positive" else BAD)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
        words.insert(rng.randint(0, len(words)), key)
        rows.append({"text": " ".join(words), "label_text": label})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tokenizer(folder: Path, texts: list[str]) -> int:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=SPECIAL)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(folder))
    return int(tok.get_vocab_size())


def tiny_encoder(folder: Path, kind: str = "bert", *, labels: tuple[str, ...] = ()) -> Path:
    """A 2-layer random encoder (bert or mobilebert); with labels, a classification head."""
    import torch
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        BertConfig,
        MobileBertConfig,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    texts = [r["text"] for r in sentiment_rows(400)]
    vocab = _tokenizer(folder, texts)
    common = dict(vocab_size=vocab, num_hidden_layers=2, num_attention_heads=2)
    if kind == "mobilebert":
        config = MobileBertConfig(
            **common,
            hidden_size=32,
            embedding_size=16,
            intermediate_size=32,
            intra_bottleneck_size=16,
            true_hidden_size=16,
            num_feedforward_networks=1,
            max_position_embeddings=64,
        )
    else:
        config = BertConfig(
            **common, hidden_size=32, intermediate_size=64, max_position_embeddings=64
        )
    torch.manual_seed(0)
    if labels:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {lb: i for i, lb in enumerate(labels)}
        AutoModelForSequenceClassification.from_config(config).save_pretrained(str(folder))
    else:
        AutoModel.from_config(config).save_pretrained(str(folder))
    return folder
