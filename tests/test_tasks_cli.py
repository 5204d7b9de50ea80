"""Task commands as a user runs them, including `slm eval --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import one_error_line, slm

pytestmark = pytest.mark.real_model
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module", autouse=True)
def _assets(smollm_path: Path) -> None:
    assert slm("pull", "all-minilm-l6-v2").returncode == 0
    assert slm("pull", "all-minilm-l6-v2-int8").returncode == 0


def test_eval_head_json() -> None:
    proc = slm(
        "eval", "sms_spam", "--method", "head", "--limit", "200", "--train-limit", "1500", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    for key in (
        "accuracy",
        "n",
        "items_per_s",
        "peak_rss_mb",
        "macro_f1",
        "confusion_matrix",
        "latency_ms_p50",
        "latency_ms_p95",
    ):
        assert key in r
    assert r["n"] == 200 and r["accuracy"] >= 0.95


def test_eval_zeroshot_and_summary_json() -> None:
    z = json.loads(
        slm("eval", "sst2", "--model", "smollm2-135m-instruct", "--limit", "32", "--json").stdout
    )
    assert z["n"] == 32 and 0 <= z["accuracy"] <= 1 and z["method"] == "zeroshot"
    s = json.loads(
        slm(
            "eval", "cnn_dailymail", "--model", "smollm2-135m-instruct", "--limit", "1", "--json"
        ).stdout
    )
    assert s["rouge1"] > 0.05 and s["min_coverage"] == 1.0 and s["n"] == 1
    assert s["lead_baseline"]["k"] >= 1 and 0 < s["lead_baseline"]["rougeL"] < 1
    assert 0 < s["summary_words_mean"] <= 2 * 60 + 16 and s["reference_words_mean"] > 0


def test_train_classifier_then_classify(tmp_path: Path) -> None:
    rows = [
        json.loads(x) for x in (DATA / "sms_spam" / "train.jsonl").read_text().splitlines()[:400]
    ]
    data = tmp_path / "spam.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken line\n")
    head = tmp_path / "spam.head.json"
    proc = slm("train-classifier", str(data), "--out", str(head), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["accuracy_heldout"] >= 0.9 and report["skipped_rows"] == 1
    assert f"{data}:401: broken JSON" in proc.stderr
    out = slm(
        "classify",
        "--method",
        "head",
        "--head",
        str(head),
        "WINNER!! You have won a 1000 cash prize. Call 09061701461 now",
        "see you at lunch?",
    )
    labels = [json.loads(line)["label"] for line in out.stdout.splitlines()]
    assert labels == ["spam", "ham"]


def test_classify_file_on_error_fail_writes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "great movie"}\n{not json\n')
    proc = slm("classify", "--file", str(f), "--labels", "negative,positive", "--on-error", "fail")
    assert proc.stdout == ""
    assert ":2: broken JSON" in one_error_line(proc)
    ok = slm("classify", "--file", str(f), "--labels", "negative,positive")
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("classify", "x", "--labels", "a"), "at least two labels"),
        (("classify", "x", "--labels", "a,b,a"), "duplicate labels: a"),
        (("classify", "x", "--method", "head"), "needs --head"),
        (("eval", "nope"), "unknown task"),
        (("eval", "sst2", "--model", "no-such-model"), "unknown model"),
    ],
)
def test_task_bad_input(args: tuple[str, ...], fragment: str) -> None:
    assert fragment in one_error_line(slm(*args))


def test_extract_cli_and_bad_schema(tmp_path: Path) -> None:
    good = tmp_path / "s.json"
    good.write_text(
        json.dumps(
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        )
    )
    proc = slm(
        "extract",
        "--schema",
        str(good),
        "--model",
        "smollm2-135m-instruct",
        "I flew to Paris last week.",
    )
    assert proc.returncode == 0, proc.stderr
    assert "city" in json.loads(proc.stdout)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "is not JSON" in one_error_line(slm("extract", "--schema", str(bad), "x"))


def test_embed_cli() -> None:
    proc = slm("embed", "hello world", "good morning")
    vecs = [json.loads(line)["embedding"] for line in proc.stdout.splitlines()]
    assert len(vecs) == 2 and len(vecs[0]) == 384
