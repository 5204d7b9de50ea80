"""Batch jobs without a model or Ray: input formats, the resumable output, the local run on
the fake backend, and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from slmkit.catalog.store import Store
from slmkit.errors import InputError
from slmkit.scale import BatchJob, OutputFile, read_input, run_local


def write_jsonl(path: Path, rows: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_inputs_jsonl_csv_parquet(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"text {i}"} for i in range(3)]
    j = write_jsonl(tmp_path / "a.jsonl", rows)
    assert read_input(j, "id", "text") == [("r0", "text 0"), ("r1", "text 1"), ("r2", "text 2")]
    c = tmp_path / "a.csv"
    c.write_text("text\nhello\nworld\n")
    assert read_input(c, "id", "text") == [(0, "hello"), (1, "world")]  # row numbers
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([{"id": 7, "body": "x"}]), tmp_path / "a.parquet")
    assert read_input(tmp_path / "a.parquet", "id", "body") == [(7, "x")]
    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "text": "a"}, {"id": 1, "text": "b"}])
    with pytest.raises(InputError, match="appears twice"):
        read_input(dup, "id", "text")
    (tmp_path / "a.txt").write_text("text\n")
    with pytest.raises(InputError, match="must be .jsonl, .csv or .parquet"):
        read_input(tmp_path / "a.txt", "id", "text")


def test_output_resumes_cuts_a_torn_line_and_never_repeats_an_id(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    out = OutputFile(path)
    assert out.write([1, "b"], [{"x": 1}, {"x": 2}]) == 2
    assert out.write(["1", "c"], [{"x": 9}, {"x": 3}]) == 1  # id 1 again (a retried batch)
    out.close()
    with path.open("a") as fh:
        fh.write('{"id": "d", "x"')  # killed mid-write
    again = OutputFile(path)
    assert again.done == {"1", "b", "c"}
    again.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == [{"id": 1, "x": 1}, {"id": "b", "x": 2}, {"id": "c", "x": 3}]
    with pytest.raises(InputError, match="must be a .jsonl"):
        OutputFile(tmp_path / "out.csv")


def test_local_run_on_the_fake_model_resumes(
    fake_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    rows = [{"id": i, "text": f"message {i}"} for i in range(10)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    opts = {"model_id": "fake-chat", "labels": "spam,ham"}
    seen: list[tuple[int, int]] = []
    first = run_local(BatchJob("classify", src, out, opts, batch_size=4), lambda *a: seen.append(a))
    assert first["rows_written"] == 10 and seen == [(4, 10), (4, 10), (2, 10)]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == list(range(10))
    assert all(x["label"] in ("spam", "ham") and set(x["probs"]) == {"spam", "ham"} for x in lines)
    write_jsonl(src, [*rows, {"id": 10, "text": "one more"}])
    again = run_local(BatchJob("classify", src, out, opts, batch_size=4))
    assert again["rows_written"] == 1 and again["rows_already_done"] == 10
    assert len(out.read_text().splitlines()) == 11


def test_cli_batch_and_ray_missing(
    fake_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}, {"text": "there"}])
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(cli, ["batch", "classify", str(src), str(out), "--model", "fake-chat"])
    assert r.exit_code != 0 and "--labels" in r.output  # the task's own error, before any row
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = CliRunner().invoke(
        cli,
        [
            "batch",
            "classify",
            str(src),
            str(out),
            "--model",
            "fake-chat",
            "--labels",
            "a,b",
            "--ray",
        ],
    )
    assert r.exit_code != 0 and "pip install 'slmkit[ray]'" in r.output
    assert not out.exists() or out.read_text() == ""


def test_every_task_runs_through_the_batch_path(
    fake_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summarize and extract take their commands' options; each output line holds the
    task's own fields, keyed by id."""
    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Call Ann at noon."}])
    out = tmp_path / "sum.jsonl"
    run_local(BatchJob("summarize", src, out, {"model_id": "fake-chat", "max_words": 20}))
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["id"] == "a" and line["summary"] and line["chunks"] >= 1
    with pytest.raises(InputError, match="--schema"):
        run_local(BatchJob("extract", src, tmp_path / "ex.jsonl", {"model_id": "fake-chat"}))
    with pytest.raises(InputError, match="unknown task"):
        run_local(BatchJob("translate", src, tmp_path / "t.jsonl"))
