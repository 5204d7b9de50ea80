"""Fine-tuning a causal SLM (LoRA by default, or all weights) on instruction/response rows.

The rows are put through the base model's own chat template and tokenizer (llama.cpp's, the
ones `slm run` uses), so training sees exactly the tokens inference will; the loss counts the
response tokens only. The weights come from the base GGUF through transformers' GGUF loader,
and the result is merged and written back to an F16 GGUF with the base's metadata
(runtime/gguf_export.py): llama.cpp, `slm run`, `slm eval` and the server use it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import DataError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HELD_ROWS = 128  # held-out rows scored at each evaluation (teacher-forced, one forward pass)
BUILTIN = ("extract_sms",)


@dataclass
class PairData:
    """Instruction/response rows to train on and rows held out for early stopping."""

    name: str
    prompts: list[str]
    responses: list[str]
    held_prompts: list[str]
    held_responses: list[str]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # what the run reports about the rows


def _extract_sms_rows() -> tuple[list[str], list[str]]:
    """The SMS training messages as `slm eval extract_sms` prompts them, with the reference
    fields (spam from the dataset's label, the others by rule) as the JSON answer."""
    from slmkit.evaluate import SMS_SCHEMA, sms_gold
    from slmkit.tasks.data import ClassificationTask, builtin_task
    from slmkit.tasks.extract import DEFAULT_INSTRUCTION, extraction_prompt

    spec = builtin_task("sms_spam")
    assert isinstance(spec, ClassificationTask)
    texts, labels = spec.load("train")
    prompts = [extraction_prompt(DEFAULT_INSTRUCTION, SMS_SCHEMA, t) for t in texts]
    return prompts, [json.dumps(sms_gold(t, y)) for t, y in zip(texts, labels, strict=True)]


def _classification_pairs(
    data: str,
    text_field: str,
    label_field: str,
    holdout: float,
    seed: int,
    limit: int | None,
    instruction: str | None,
) -> PairData:
    """A classification task as questions answered by a label word, prompted exactly as the
    zero-shot classifier prompts (so `slm eval TASK --model ID` measures the result)."""
    from slmkit.tasks.classify import classify_body
    from slmkit.train.data import load_train_data

    td = load_train_data(
        data,
        text_field=text_field,
        label_field=label_field,
        holdout=holdout,
        seed=seed,
        limit=limit,
    )
    words = {c: c.replace("_", " ") for c in td.classes}
    choices = tuple(words.values())
    question = instruction or td.instruction

    def ask(texts: list[str]) -> list[str]:
        return [classify_body(question, choices, t) for t in texts]

    return PairData(
        data,
        ask(td.texts),
        [words[y] for y in td.labels],
        ask(td.held_texts),
        [words[y] for y in td.held_labels],
        td.skipped,
    )


def load_pairs(
    data: str,
    *,
    holdout: float,
    seed: int,
    limit: int | None,
    text_field: str = "text",
    label_field: str = "label_text",
    instruction: str | None = None,
) -> PairData:
    """`extract_sms`; a JSONL/CSV with `prompt` and `response` columns; or classification
    data (a built-in task, or a labelled file) as questions answered by a label word.
    Checked in full up front."""
    from slmkit.tasks.data import TASK_NAMES, read_rows

    path = Path(data)
    is_file = path.suffix.lower() in (".jsonl", ".csv")
    if is_file and "prompt" in read_rows(path, required=(), on_error="fail").rows[0]:
        res = read_rows(path, required=("prompt", "response"))
        prompts = [str(r["prompt"]) for r in res.rows]  # read_rows refuses empty fields
        responses = [str(r["response"]) for r in res.rows]
    elif data in BUILTIN:
        prompts, responses = _extract_sms_rows()
    elif is_file or data in TASK_NAMES:
        return _classification_pairs(
            data, text_field, label_field, holdout, seed, limit, instruction
        )
    else:
        raise DataError(
            f"{data!r}: a chat base trains on a JSONL/CSV with 'prompt' and 'response' "
            f"columns, on {', '.join(BUILTIN)}, or on classification data"
        )
    order = np.random.default_rng(seed).permutation(len(prompts))
    if limit:
        order = order[:limit]
    n_held = max(1, round(len(order) * holdout))
    if len(order) - n_held < 1:
        raise DataError(f"too few rows ({len(order)}) to hold out {n_held} for evaluation")
    held, train = order[:n_held], order[n_held:]
    return PairData(
        data,
        [prompts[i] for i in train],
        [responses[i] for i in train],
        [prompts[i] for i in held],
        [responses[i] for i in held],
    )


@dataclass
class Encoded:
    """Token ids per row, where each row's response starts, and how many leading tokens all
    rows share (the system prompt and instruction: computed once per batch, see `logits`)."""

    ids: list[list[int]]
    starts: list[int]
    prefix: int = 0

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) - self.prefix for x in self.ids])

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Right-padded ids after the shared prefix, the attention mask over prefix and rest,
        positions, and labels (-100 outside the responses) aligned with the ids."""
        import torch

        p = self.prefix
        rows = [self.ids[i][p:] for i in idx]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), p + width, dtype=torch.long)
        mask[:, :p] = 1
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for j, (i, r) in enumerate(zip(idx, rows, strict=True)):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, p : p + len(r)] = 1
            start = self.starts[i] - p
            labels[j, start : len(r)] = torch.tensor(r[start:])
        positions = torch.arange(p, p + width).unsqueeze(0).expand(len(rows), -1)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "positions": positions}


def shared_prefix(ids: list[list[int]], starts: list[int]) -> int:
    """Leading tokens common to every row, stopping before the first response's predictor."""
    if not ids:
        return 0
    first, n = ids[0], min(starts) - 1
    for row in ids[1:]:
        k = 0
        while k < n and row[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def logits(model: Any, enc: Encoded, idx: np.ndarray) -> tuple[Any, Any]:
    """The rows' next-token logits and the labels they predict (already shifted: logits[:, i]
    predicts labels[:, i]). The shared prefix runs once as a batch of one and its key/value
    cache is repeated for the batch, and the output head runs only from the first position
    that predicts a response token: the same loss and gradients as running every full row
    (checked in the tests), at a fraction of the work when the prompt is most of each row
    (an instruction with a schema; a document to summarize), and a fraction of the memory
    (a 152k-word vocabulary makes the logits of a whole batch of rows gigabytes)."""
    import torch

    b = enc.batch(idx)
    first = min(enc.starts[int(i)] for i in idx) - enc.prefix - 1  # predicts the first answer
    keep = b["input_ids"].shape[1] - max(first, 0)
    cache = None
    if enc.prefix:
        head = torch.tensor([enc.ids[int(idx[0])][: enc.prefix]])
        cache = model(input_ids=head, use_cache=True).cache
        cache.batch_repeat_interleave(len(idx))
    out = model(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        position_ids=b["positions"],
        cache=cache,
        use_cache=cache is not None,
        logits_to_keep=keep,
    )
    labels = b["labels"][:, -keep:]
    return out.logits[:, :-1], labels[:, 1:]


def loss(model: Any, enc: Encoded, idx: np.ndarray) -> Any:
    """Mean cross-entropy over the response tokens of the rows."""
    import torch

    out, gold = logits(model, enc, idx)
    pred = out.float()
    return torch.nn.functional.cross_entropy(
        pred.reshape(-1, pred.shape[-1]), gold.reshape(-1), ignore_index=-100
    )


def encode_pairs(
    chat: Any, prompts: list[str], responses: list[str], max_length: int
) -> tuple[Encoded, int]:
    """Tokenize through the base's chat template (a slmkit Model); the response ends with the
    end-of-turn token. Rows longer than max_length are dropped; returns how many were."""
    _, eos = chat.backend.special_tokens()
    ids, starts, dropped = [], [], 0
    for p, r in zip(prompts, responses, strict=True):
        head = chat.backend.tokenize(chat.format_chat([{"role": "user", "content": p}]))
        tail = chat.backend.tokenize(r + eos, add_special=False)
        if len(head) + len(tail) > max_length:
            dropped += 1
            continue
        ids.append(head + tail)
        starts.append(len(head))
    return Encoded(ids, starts, shared_prefix(ids, starts)), dropped


def load_causal(path: Path, method: str, seed: int) -> Any:
    """The base's weights in fp32 from its GGUF; wrapped in LoRA adapters for method lora."""
    import contextlib
    import io
    import warnings

    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with contextlib.redirect_stderr(io.StringIO()):  # the GGUF loader's own tqdm bar
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    model.config.use_cache = False
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        targets = [t for t in LORA_TARGETS if t in present]
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets)
        with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            model = get_peft_model(model, lora)
    return model


def response_accuracy(model: Any, enc: Encoded, batch_size: int = 16) -> float:
    """Share of response tokens the model predicts (greedy, teacher-forced)."""
    import torch

    right = total = 0
    with torch.inference_mode():
        for start in range(0, len(enc.ids), batch_size):
            idx = np.arange(start, min(start + batch_size, len(enc.ids)))
            out, gold = logits(model, enc, idx)
            pred = out.argmax(-1)
            keep = gold != -100
            right += int((pred[keep] == gold[keep]).sum())
            total += int(keep.sum())
    return right / max(total, 1)


def merged(model: Any, method: str) -> Any:
    return model.merge_and_unload() if method == "lora" else model
