"""Reading user data (JSONL/CSV) and the built-in evaluation datasets."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slmkit.errors import DataError, EmptyPromptError

OnError = Literal["skip", "fail"]


@dataclass
class LoadResult:
    """Rows read, and the problems found (line number, message) when skipping."""

    rows: list[dict[str, Any]]
    errors: list[tuple[int, str]] = field(default_factory=list)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, f"broken JSON ({e.msg})"
                continue
            yield lineno, obj if isinstance(obj, dict) else "not a JSON object"


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            yield reader.line_num, dict(row)


def read_rows(
    path: str | Path,
    *,
    required: tuple[str, ...] = ("text",),
    on_error: OnError = "skip",
) -> LoadResult:
    """Read a .jsonl or .csv file; every row must have the `required` fields, non-empty.

    on_error='skip' keeps the good rows and reports each bad one by line number;
    on_error='fail' raises DataError at the first bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    rows_iter = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    result = LoadResult(rows=[])
    try:
        for lineno, row in rows_iter:
            problem = row if isinstance(row, str) else _missing(row, required)
            if problem:
                if on_error == "fail":
                    raise DataError(f"{path}:{lineno}: {problem}")
                result.errors.append((lineno, problem))
                continue
            assert isinstance(row, dict)
            result.rows.append(row)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason})") from e
    if not result.rows:
        detail = (
            f"; first problem: line {result.errors[0][0]}: {result.errors[0][1]}"
            if result.errors
            else ""
        )
        raise DataError(f"{path} has no usable rows with fields {', '.join(required)}{detail}")
    return result


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """A non-empty list of non-blank strings, or EmptyPromptError naming the first bad one."""
    batch = list(texts)
    if not batch:
        raise EmptyPromptError(f"no {what}")
    for i, t in enumerate(batch):
        if not isinstance(t, str) or not t.strip():
            raise EmptyPromptError(f"text {i} is empty")
    return batch


def _missing(row: dict[str, Any], required: tuple[str, ...]) -> str:
    for name in required:
        if name not in row:
            return f"missing field {name!r}"
        value = row[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"empty field {name!r}"
    return ""


def dataset_file(name: str, split_or_file: str) -> Path:
    """A built-in dataset's file from the store (`slm data pull NAME`); installed from
    $SLMKIT_DATA_DIR on first use when that is set; else DataNotInstalledError naming
    `slm data pull NAME`."""
    from slmkit.catalog.data_store import DataStore

    return DataStore().require(name, split_or_file)


def task_file(name: str, file: str) -> Path:
    """A task's file: a built-in dataset's from the store; a user's task (named by its
    path) reads its own file."""
    from slmkit.catalog.datasets import BY_NAME

    return dataset_file(name, file) if name in BY_NAME else Path(file)


@dataclass(frozen=True)
class ClassificationTask:
    """A labelled text dataset with train and test splits."""

    name: str
    train: str
    test: str
    labels: tuple[str, ...]
    instruction: str
    kind: Literal["classify"] = "classify"

    def load(
        self, split: Literal["train", "test"], limit: int | None = None
    ) -> tuple[list[str], list[str]]:
        res = read_rows(
            task_file(self.name, getattr(self, split)),
            required=("text", "label_text"),
            on_error="fail",
        )
        rows = res.rows[:limit] if limit else res.rows
        return [r["text"] for r in rows], [r["label_text"] for r in rows]


@dataclass(frozen=True)
class SummarizationTask:
    name: str
    file: str
    kind: Literal["summarize"] = "summarize"
    # None: every row; "train"/"test": the deterministic split of summary_split()
    split: Literal["train", "test"] | None = None

    def load(self, limit: int | None = None) -> tuple[list[str], list[str]]:
        docs, refs, _ = self.load_pairs(limit)
        return docs, refs

    def load_pairs(self, limit: int | None = None) -> tuple[list[str], list[str], int]:
        """Documents, reference summaries, and how many rows were skipped because the
        summary has more words than its document (not a summary: a swapped column, most
        likely). A DataError when that leaves no row."""
        res = read_rows(
            task_file(self.name, self.file), required=("document", "summary"), on_error="fail"
        )
        rows = summary_split(res.rows, self.split) if self.split else res.rows
        rows = rows[:limit] if limit else rows
        good = [r for r in rows if len(r["summary"].split()) <= len(r["document"].split())]
        if not good:
            raise DataError(
                f"{self.name}: every summary is longer than its document (are the "
                "'document' and 'summary' fields swapped?)"
            )
        return [r["document"] for r in good], [r["summary"] for r in good], len(rows) - len(good)

    def training(self) -> SummarizationTask | None:
        """The rows a baseline's settings are chosen on (never the rows reported): the
        training split of a built-in dataset; None for a user's file."""
        from slmkit.catalog.datasets import BY_NAME

        if self.name not in BY_NAME:
            return None
        return SummarizationTask(self.name, self.file, split="train")


TEST_SHARE = 5  # one row in five is held back for reports


def summary_split(
    rows: list[dict[str, Any]], which: Literal["train", "test"]
) -> list[dict[str, Any]]:
    """A deterministic train/test split, in file order. Rows that carry a `split` field keep
    it ("test" is test; "validation" and "train" are train: QMSum's 35 + 35 meetings); else
    the len/5 rows whose sha256(id) (or of the document, without an id) is smallest are test
    (CNN/DailyMail: 200 of the 1,000), so the split does not depend on the order of rows."""
    import hashlib

    if rows and all("split" in r for r in rows):
        return [r for r in rows if (r["split"] == "test") == (which == "test")]
    keys = [hashlib.sha256(str(r.get("id", r["document"])).encode()).hexdigest() for r in rows]
    test = set(sorted(range(len(rows)), key=keys.__getitem__)[: len(rows) // TEST_SHARE])
    return [r for i, r in enumerate(rows) if (i in test) == (which == "test")]


def _banking_labels() -> tuple[str, ...]:
    try:
        text = dataset_file("banking77", "labels.txt").read_text()
    except (DataError, OSError):
        return ()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def builtin_task(name: str) -> ClassificationTask | SummarizationTask:
    """Look up a built-in task by name; DataError lists the known ones."""
    if name == "sst2":
        return ClassificationTask(
            "sst2",
            "train.jsonl",
            "validation.jsonl",
            ("negative", "positive"),
            "Is the sentiment of this movie review positive or negative?",
        )
    if name == "sms_spam":
        return ClassificationTask(
            "sms_spam",
            "train.jsonl",
            "test.jsonl",
            ("ham", "spam"),
            "Is this SMS message spam or ham (not spam)?",
        )
    if name == "banking77":
        return ClassificationTask(
            "banking77",
            "train.jsonl",
            "test.jsonl",
            _banking_labels(),
            "Which banking customer-support intent is this message?",
        )
    base, _, split = name.partition("-")
    if base in SUMMARY_FILES and split in ("", "train", "test"):
        part: Literal["train", "test"] | None = split or None  # type: ignore[assignment]
        return SummarizationTask(base, SUMMARY_FILES[base], split=part)
    raise DataError(
        f"unknown task {name!r}; built-in: {', '.join(TASK_NAMES)} (summaries also as "
        f"NAME-train and NAME-test: {', '.join(f'{n}-test' for n in SUMMARY_FILES)})"
    )


# summarization datasets; NAME-train and NAME-test are summary_split()'s halves
SUMMARY_FILES = {"cnn_dailymail": "validation_1000.jsonl", "qmsum": "general_summaries.jsonl"}
TASK_NAMES = ("sst2", "sms_spam", "banking77", "cnn_dailymail", "qmsum", "extract_sms")
