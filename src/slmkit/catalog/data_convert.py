"""Upstream files -> the files slmkit stores, for the datasets a network pull can rebuild.

Each converter takes the upstream files' bytes (keyed by upstream path, already checked
against their own sha256) and returns the stored files' bytes, which the pull then checks
against the catalog's pins: a converter that drifted fails the pull, it cannot install
different data. These three were checked byte for byte against the upstream commits the
catalog names (sst2, banking77, cnn_dailymail); arc_easy_dev is stored verbatim. sms_spam
(a seeded, grouped split), qmsum and qmsum_qa (one upstream file per meeting) install from a
local copy only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

Files = dict[str, bytes]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _sst2_split(data: bytes) -> bytes:
    lines = [ln for ln in data.decode("utf-8").split("\n")[1:] if ln.strip()]
    rows = []
    for i, ln in enumerate(lines):
        text, label = ln.rsplit("\t", 1)
        lab = int(label)
        rows.append(
            {
                "id": i,
                "text": text.strip(),
                "label": lab,
                "label_text": ("negative", "positive")[lab],
            }
        )
    return _jsonl(rows)


def sst2(up: Files) -> Files:
    return {
        "train.jsonl": _sst2_split(up["data/SST-2/train.tsv"]),
        "validation.jsonl": _sst2_split(up["data/SST-2/dev.tsv"]),
    }


# upstream train rows whose text also occurs in test (PROVENANCE: removed)
BANKING_TRAIN_DROPPED = frozenset({1722, 3103, 3116, 4476, 4576, 6984, 9921})


def banking77(up: Files) -> Files:
    cats: list[str] = json.loads(up["banking_data/categories.json"])
    out = {"labels.txt": "".join(c + "\n" for c in cats).encode()}
    for split, drop in (("train", BANKING_TRAIN_DROPPED), ("test", frozenset())):
        rows = [
            {
                "id": i,
                "text": r["text"].strip(),
                "label": cats.index(r["category"]),
                "label_text": r["category"],
            }
            for i, r in enumerate(_csv(up[f"banking_data/{split}.csv"]))
            if i not in drop
        ]
        out[f"{split}.jsonl"] = _jsonl(rows)
    return out


def cnn_dailymail(up: Files) -> Files:
    rows = [
        {
            "id": r["id"],
            "document": r["article"],
            "summary": r["highlights"],
            "document_chars": len(r["article"]),
        }
        for r in _csv(up["data/collection/cnn_dailymail_validation_subset.csv"])
    ]
    return {"validation_1000.jsonl": _jsonl(rows)}


CONVERTERS: dict[str, Callable[[Files], Files]] = {
    "sst2": sst2,
    "banking77": banking77,
    "cnn_dailymail": cnn_dailymail,
}
