"""Batch jobs (`slm batch`, `slmkit.scale.run_batch`): a task over a large JSONL, CSV or
Parquet file, locally or on Ray (scale/ray_job.py), with the same task code as the CLI
(tasks/registry.py) and one output format: JSONL, one line per input row, keyed by the row's
id, `{"id": ..., <the task's fields>}`.

Nothing is lost or written twice: the output is append-only, each batch's lines are
written and fsync'd together, a rerun reads the ids already written (dropping a torn last
line left by a kill) and skips them, and the writer refuses an id it has already written
(so a batch that Ray retried after a worker died cannot land twice).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.errors import InputError

Progress = Callable[[int, int], None]  # (rows just done, rows to do in all)


@dataclass
class BatchJob:
    """What to run: TASK over INPUT into OUTPUT, with the task command's own options."""

    task: str
    input: Path
    output: Path
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    workers: int = 2  # Ray actors (each loads the model once)
    cpus_per_worker: float = 1.0
    id_field: str = "id"
    text_field: str = "text"


RowId = int | str


def read_input(path: Path, id_field: str, text_field: str) -> list[tuple[RowId, str]]:
    """(id, text) per row of a .jsonl, .csv or .parquet file; a row without `id_field`
    gets its 0-based row number. Ids (ints or strings, kept as given) must be unique; texts
    non-empty strings."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    if suffix == ".parquet":
        rows: Iterator[dict[str, Any]] = _parquet_rows(path)
    elif suffix in (".jsonl", ".csv"):
        from slmkit.tasks.data import read_rows

        rows = iter(read_rows(path, required=(text_field,), on_error="fail").rows)
    else:
        raise InputError(f"{path}: input must be .jsonl, .csv or .parquet")
    out, seen = [], set()
    for i, row in enumerate(rows):
        text = row.get(text_field)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}: row {i} has no text in field {text_field!r}")
        rid = row.get(id_field)
        if rid is None:
            rid = i
        elif not isinstance(rid, int | str) or isinstance(rid, bool):
            raise InputError(f"{path}: row {i}: id must be an integer or a string")
        if str(rid) in seen:
            raise InputError(f"{path}: id {rid!r} appears twice (ids must be unique)")
        seen.add(str(rid))
        out.append((rid, text))
    return out


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise InputError("reading Parquet needs pyarrow: pip install 'slmkit[ray]'") from e
    yield from pq.read_table(path).to_pylist()


class OutputFile:
    """Append-only JSONL keyed by id: resumable, never the same id twice."""

    def __init__(self, path: Path) -> None:
        if path.suffix.lower() != ".jsonl":
            raise InputError(f"{path}: output must be a .jsonl file")
        self.path = path
        self.done: set[str] = set()
        if path.exists():
            self._recover()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")

    def _recover(self) -> None:
        """Read the ids written so far; cut a torn last line (a kill mid-write)."""
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1
        if good < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good)
        for line in data[:good].splitlines():
            if line.strip():
                self.done.add(str(json.loads(line)["id"]))

    def write(self, ids: Sequence[RowId], results: Sequence[dict[str, Any]]) -> int:
        """Append one batch (skipping ids already written), flushed and fsync'd at once.
        Returns how many lines were new."""
        lines = []
        for rid, res in zip(ids, results, strict=True):
            if str(rid) in self.done:
                continue
            self.done.add(str(rid))
            lines.append(json.dumps({"id": rid, **res}, ensure_ascii=False) + "\n")
        if lines:
            self._fh.write("".join(lines))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return len(lines)

    def close(self) -> None:
        self._fh.close()


def pending(job: BatchJob, out: OutputFile) -> list[tuple[RowId, str]]:
    rows = read_input(job.input, job.id_field, job.text_field)
    return [r for r in rows if str(r[0]) not in out.done]


def run_local(job: BatchJob, progress: Progress | None = None) -> dict[str, Any]:
    """Run in this process, batch by batch (the task batches inside: the engine or the
    classifier's own batching), appending to the output as each batch ends."""
    import time

    from slmkit.tasks.registry import make_task

    out = OutputFile(job.output)
    try:
        todo = pending(job, out)
        skipped = len(out.done)
        t0 = time.perf_counter()
        fn = make_task(job.task, job.options) if todo else None
        written = 0
        for start in range(0, len(todo), job.batch_size):
            chunk = todo[start : start + job.batch_size]
            assert fn is not None
            written += out.write([r[0] for r in chunk], fn([r[1] for r in chunk]))
            if progress:
                progress(len(chunk), len(todo))
        return summary(job, written, skipped, time.perf_counter() - t0, "local")
    finally:
        out.close()


def summary(
    job: BatchJob, written: int, skipped: int, seconds: float, where: str
) -> dict[str, Any]:
    return {
        "task": job.task,
        "output": str(job.output),
        "rows_written": written,
        "rows_already_done": skipped,
        "seconds": round(seconds, 2),
        "items_per_s": round(written / seconds, 2) if seconds > 0 and written else None,
        "ran_on": where,
    }


def run_batch(
    job: BatchJob, ray_address: str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Locally (ray_address None) or on Ray ("local": a Ray started here; else an address)."""
    if ray_address is None:
        return run_local(job, progress)
    from slmkit.scale.ray_job import run_ray

    return run_ray(job, ray_address, progress)
