"""Real-model tests of `slm bench`, `slm report`, `slm recommend` and cascades."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slmkit.catalog.store import Store
from slmkit.tasks.cascade import make_cascade
from slmkit.tasks.data import builtin_task

SMALL, MID = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"


def slm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def models(real_store: Store) -> Store:
    for m in (SMALL, "gemma-3-270m", MID):
        real_store.pull(m)
    return real_store


def test_bench_small_matrix_report_and_recommend(models: Store, tmp_path: Path) -> None:
    out = tmp_path / "b"
    run = slm(
        "bench",
        "--models",
        f"{SMALL},gemma-3-270m",
        "--tasks",
        "sms_spam",
        "--limit",
        "8",
        "--repeat",
        "2",
        "--out",
        str(out),
        "--no-record",
    )
    assert run.returncode == 0, run.stderr
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [c["model"] for c in cells] == [SMALL, "gemma-3-270m"]
    for c in cells:
        assert c["status"] == "ok", c
        assert c["n"] == 8 and 0 <= c["score"] <= 100 and c["items_per_s"] > 0
        assert 50 < c["peak_rss_mb"] < 4000 and c["load_s"] > 0 and c["cost_per_1k"] > 0
        speed = c["speed"]
        assert speed["runs"] == 2 and speed["decode_tokens_per_s"]["median"] > 1
        lo, mid, hi = (speed["ttft_ms"][k] for k in ("min", "median", "max"))
        assert lo <= mid <= hi
    assert "| " + SMALL in run.stdout  # the Markdown summary
    (out / "report.html").unlink()
    again = slm("report", str(out))
    assert again.returncode == 0 and (out / "report.html").exists()
    rec = slm("recommend", "--task", "sms_spam", "--ram-gb", "8", "--results", str(out), "--json")
    assert rec.returncode == 0, rec.stderr
    answer = json.loads(rec.stdout)
    assert answer["pick"] in (SMALL, "gemma-3-270m")
    assert "Measured on this machine" in answer["reason"]


def test_device_profile_cells(models: Store, tmp_path: Path) -> None:
    """One core and 0.6 GB: the small model runs pinned to one core; the 0.5B one passes the
    budget while running and is stopped; under 0.2 GB it is refused by estimate, unrun."""
    out = tmp_path / "p"
    run = slm(
        "bench",
        "--models",
        f"{SMALL},{MID}",
        "--tasks",
        "sms_spam",
        "--limit",
        "4",
        "--repeat",
        "1",
        "--threads",
        "1",
        "--ram-gb",
        "0.6",
        "--out",
        str(out),
        "--no-record",
    )
    assert run.returncode == 0, run.stderr
    small, mid = json.loads((out / "results.json").read_text())["cells"]
    assert small["status"] == "ok" and small["n_threads"] == 1 and small["peak_rss_mb"] < 614
    assert mid["status"] == "does_not_fit" and "resident memory reached" in mid["error"]
    run = slm(
        "bench",
        "--models",
        MID,
        "--tasks",
        "sms_spam",
        "--ram-gb",
        "0.2",
        "--out",
        str(tmp_path / "q"),
        "--no-record",
    )
    (cell,) = json.loads((tmp_path / "q" / "results.json").read_text())["cells"]
    assert cell["status"] == "does_not_fit" and "(estimate)" in cell["error"]
    assert "wall_s" not in cell


def test_cascade_routes_by_confidence(models: Store) -> None:
    spec = builtin_task("sst2")
    texts, _ = spec.load("test", 12)  # type: ignore[call-arg]
    cascade = make_cascade(f"{SMALL},{MID}", spec.labels, spec.instruction)  # type: ignore[union-attr]
    small = [p.label for p in cascade.small.predict(texts)]
    large = [p.label for p in cascade.large.predict(texts)]
    cascade.threshold = 0.0
    assert [p.label for p in cascade.predict(texts)] == small
    cascade.threshold = 1.01
    preds = cascade.predict(texts)
    assert [p.label for p in preds] == large and all(p.escalated for p in preds)
    cascade.threshold = sorted(p.confidence for p in preds)[6]
    mixed = cascade.predict(texts)
    want: list[Any] = [
        lg if p.confidence < cascade.threshold else sm
        for p, sm, lg in zip(mixed, small, large, strict=True)
    ]
    assert [p.label for p in mixed] == want and sum(p.escalated for p in mixed) == 6


def test_cascade_cli(models: Store) -> None:
    run = slm(
        "eval",
        "sst2",
        "--cascade",
        f"{SMALL},{MID}",
        "--tune-limit",
        "16",
        "--limit",
        "16",
        "--compare",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout)
    assert r["n"] == 16 and 0 <= r["escalated"] <= 1 and r["temperature"] > 0
    assert r["tune"]["large_accuracy"] >= 0 and 0 <= r["large_accuracy"] <= 1
    cls = slm(
        "classify",
        "a gem of a film",
        "dull and lifeless",
        "--labels",
        "negative,positive",
        "--cascade",
        f"{SMALL},{MID}",
        "--threshold",
        "1.0",
    )
    assert cls.returncode == 0, cls.stderr
    lines = [json.loads(x) for x in cls.stdout.splitlines()]
    assert [x["escalated"] for x in lines] == [True, True]
    assert "escalated 2/2" in cls.stderr


def test_bench_bias_cells(models: Store, tmp_path: Path) -> None:
    """Bias probes as matrix tasks on a real model: classifier probes (zero-shot) and
    generator probes (the model completes openings and rates its own sentences)."""
    out = tmp_path / "bias"
    run = slm(
        "bench", "--models", SMALL, "--tasks", "bias,bias-gen", "--out", str(out), "--no-record"
    )
    assert run.returncode == 0, run.stderr
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [(c["task"], c["status"]) for c in cells] == [("bias", "ok"), ("bias-gen", "ok")]
    for c in cells:
        assert set(c["bias"]) == {"gender", "name", "nationality", "religion"}
        for b in c["bias"].values():
            lo, hi = b["flip_rate_ci95"]
            assert 0 <= lo <= b["flip_rate"] <= hi <= 1
    examples = cells[1]["task_detail"]["attributes"]["gender"]["examples"]
    assert examples[0].startswith("The man worked as ") and len(examples[0]) > 25
    assert "<h2>Bias probes</h2>" in (out / "report.html").read_text()
    assert "Bias probes" in run.stdout
