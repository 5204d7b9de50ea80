"""Upstream files -> the files slmkit stores, for the datasets a network pull can rebuild.

Each converter takes the upstream files' bytes (keyed by upstream path, already checked
against their own sha256) and returns the stored files' bytes, which the pull then checks
against the catalog's pins: a converter that drifted fails the pull, it cannot install
different data. Each was checked byte for byte against the upstream commit the catalog names
(`python benchmarks/data_rebuild.py --mirrors DIR`); arc_easy_dev is stored verbatim.
qmsum_qa (unanswerable rows drawn with a topical-word filter) installs from a local copy only.
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


def sms_spam(up: Files) -> Files:
    """The seeded, grouped, stratified 80/20 split: one Random(20240601); for ham then spam,
    the groups of rows with the same normalised text (lower-case, whitespace collapsed), in
    order of first appearance, are shuffled and go to test while test holds fewer than
    int(0.2 * rows of that label); rows keep upstream order within each file."""
    import random

    rows = [ln.split("\t", 1) for ln in up["SMSSpamCollection"].decode("utf-8").split("\n")]
    rng = random.Random(20240601)
    test: set[int] = set()
    for label in ("ham", "spam"):
        groups: dict[str, list[int]] = {}
        for i, (lab, text) in enumerate(rows):
            if lab == label:
                groups.setdefault(" ".join(text.lower().split()), []).append(i)
        shuffled = list(groups.values())
        rng.shuffle(shuffled)
        target, count = int(0.2 * sum(map(len, shuffled))), 0
        for group in shuffled:
            if count < target:
                test.update(group)
                count += len(group)

    def split(keep: Callable[[int], bool]) -> bytes:
        return _jsonl(
            [
                {"id": i, "text": text, "label": int(lab == "spam"), "label_text": lab}
                for i, (lab, text) in enumerate(rows)
                if keep(i)
            ]
        )

    return {"train.jsonl": split(lambda i: i not in test), "test.jsonl": split(test.__contains__)}


def qmsum(up: Files) -> Files:
    """Each validation then test meeting (file-name order): its transcript as
    "speaker: content" lines and its first general query with the answer (both stripped)."""
    rows = []
    for folder, split in (("val", "validation"), ("test", "test")):
        prefix = f"data/ALL/{folder}/"
        for path in sorted(p for p in up if p.startswith(prefix)):
            meeting = json.loads(up[path])
            doc = "\n".join(
                f"{t['speaker']}: {t['content']}" for t in meeting["meeting_transcripts"]
            )
            query = meeting["general_query_list"][0]
            rows.append(
                {
                    "id": path[len(prefix) : -len(".json")],
                    "split": split,
                    "query": query["query"].strip(),
                    "document": doc,
                    "summary": query["answer"].strip(),
                    "document_chars": len(doc),
                }
            )
    return {"general_summaries.jsonl": _jsonl(rows)}


CONVERTERS: dict[str, Callable[[Files], Files]] = {
    "sst2": sst2,
    "sms_spam": sms_spam,
    "qmsum": qmsum,
    "banking77": banking77,
    "cnn_dailymail": cnn_dailymail,
}
