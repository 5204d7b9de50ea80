"""Multiple-choice benchmarks scored by log-likelihood, as lm-evaluation-harness scores them.

Each item becomes a context and one continuation per choice (`" " + choice`); every pair is
scored through the model's batched scorer. `acc` takes the choice with the highest summed
log-probability; `acc_norm` divides each by the choice's length in characters (the harness's
length normalisation) first. Prompts are the harness's (0.4.x task configs):

- arc (ARC-Easy/Challenge): `Question: {question}\\nAnswer:`; choices are the answer texts.
- hellaswag: `{activity_label}: {ctx_a} {ctx_b capitalised}`, cleaned as the harness does
  (` [title]` -> `. `, other `[...]` tags removed, double spaces collapsed); choices are
  the cleaned endings.
- piqa: `Question: {goal}\\nAnswer:`; choices `sol1`, `sol2`.

Files are JSONL in each dataset's public layouts (AI2's nested ARC or Hugging Face's flat
one; HellaSwag's; PIQA with a `label` per row).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import DataError
from slmkit.evaluate import Progress, Timer

FORMATS = ("arc", "hellaswag", "piqa")


@dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]
    gold: int


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _arc(row: dict[str, Any]) -> Item:
    q = row["question"]
    if isinstance(q, dict):  # AI2's layout
        stem, texts = q["stem"], [c["text"] for c in q["choices"]]
        labels = [str(c["label"]) for c in q["choices"]]
    else:  # Hugging Face's
        stem, texts, labels = q, row["choices"]["text"], [str(x) for x in row["choices"]["label"]]
    key = str(row["answerKey"])
    if key not in labels:
        raise DataError(f"answerKey {key!r} is not one of the choices {labels}")
    return Item(f"Question: {stem}\nAnswer:", tuple(texts), labels.index(key))


def _hellaswag(row: dict[str, Any]) -> Item:
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    query = _hellaswag_clean(row["activity_label"] + ": " + ctx)
    return Item(query, tuple(_hellaswag_clean(e) for e in row["endings"]), int(row["label"]))


def _piqa(row: dict[str, Any]) -> Item:
    return Item(f"Question: {row['goal']}\nAnswer:", (row["sol1"], row["sol2"]), int(row["label"]))


READERS = {"arc": _arc, "hellaswag": _hellaswag, "piqa": _piqa}


def read_items(path: Path, fmt: str, limit: int | None = None) -> list[Item]:
    """Every row parsed (a bad row fails with its line number); the first `limit` kept."""
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    items = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = READERS[fmt](json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise DataError(f"{path}:{n}: not a {fmt} row ({type(e).__name__}: {e})") from e
            if len(item.choices) < 2 or not 0 <= item.gold < len(item.choices):
                raise DataError(f"{path}:{n}: needs two choices or more and a gold among them")
            items.append(item)
            if limit and len(items) >= limit:
                break
    if not items:
        raise DataError(f"{path}: no rows")
    return items


def _stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n > 1 else 0.0


def evaluate_mc(
    model: Any, items: list[Item], *, batch: int = 8, progress: Progress | None = None
) -> dict[str, Any]:
    """acc and acc_norm (with standard errors), items/s and latency."""
    timer = Timer()

    def score(part: list[Item]) -> list[np.ndarray]:
        pairs = [(it.context, " " + c) for it in part for c in it.choices]
        lls = [r.logprob for r in model.loglikelihood_many(pairs)]
        out, k = [], 0
        for it in part:
            out.append(np.array(lls[k : k + len(it.choices)]))
            k += len(it.choices)
        return out

    scores = timer.run(score, items, batch, progress)
    acc = [int(s.argmax()) == it.gold for s, it in zip(scores, items, strict=True)]
    norm = [
        int((s / np.array([len(c) for c in it.choices], dtype=float)).argmax()) == it.gold
        for s, it in zip(scores, items, strict=True)
    ]
    n = len(items)
    a, b = float(np.mean(acc)), float(np.mean(norm))
    out: dict[str, Any] = {
        "n": n,
        "acc": round(a, 4),
        "acc_stderr": round(_stderr(a, n), 4),
        "acc_norm": round(b, 4),
        "acc_norm_stderr": round(_stderr(b, n), 4),
        "chance": round(float(np.mean([1 / len(it.choices) for it in items])), 4),
    }
    out.update(timer.report(n))
    return out
