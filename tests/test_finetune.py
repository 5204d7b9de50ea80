"""Fine-tuning the real all-MiniLM-L6-v2 (from its package) on the shared SMS spam data: the
quick path users run, a real kill -9 and resume, and int8 ONNX of the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmkit.catalog.assets import MINILM_FP32, asset_dir
from slmkit.catalog.store import Store
from slmkit.settings import Settings

SLM = [sys.executable, "-m", "slmkit"]


@pytest.fixture
def minilm_home(tmp_path: Path, real_store: Store) -> Path:
    """A fresh store whose MiniLM asset is the real one (linked, not copied)."""
    src = asset_dir(real_store, MINILM_FP32, pull=True)
    (tmp_path / "home" / "assets").mkdir(parents=True)
    (tmp_path / "home" / "assets" / MINILM_FP32.name).symlink_to(src)
    return tmp_path / "home"


def _slm(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLMKIT_HOME": str(home)}
    return subprocess.run(
        [*SLM, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_quick_path_beats_the_majority_baseline_then_int8(minilm_home: Path) -> None:
    r = _slm(
        minilm_home,
        *("finetune", "sms_spam", "--base", "all-minilm-l6-v2", "--out", "sms"),
        *("--max-minutes", "2", "--force", "--json"),
    )
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["lineage"]["base"] == "all-minilm-l6-v2" and made["lineage"]["data"] == "sms_spam"
    r = _slm(minilm_home, "eval", "sms_spam", "--model", "sms", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["method"] == "finetuned" and ev["n"] == 1114
    assert ev["accuracy"] > ev["majority_baseline"] == pytest.approx(0.866, abs=1e-3)
    r = _slm(
        minilm_home,
        *("quantize", "sms", "--type", "int8", "--out", "sms-int8"),
        *("--guard", "sms_spam", "--limit", "300", "--max-drop", "1", "--json"),
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[0])
    assert rep["result"]["size_bytes"] <= 0.30 * rep["source"]["size_bytes"]
    assert rep["drop_points"] <= 1.0
    # the int8 file answers as the model it came from (a label from one text would test how far
    # the 2-minute, time-bounded training got on this CPU, which varies: it once said "ham" here)
    text = "WINNER! Claim your free prize now"
    got = {}
    for model in ("sms", "sms-int8"):
        r = _slm(minilm_home, "classify", "--model", model, text)
        assert r.returncode == 0, r.stderr
        got[model] = json.loads(r.stdout)
    assert set(got["sms-int8"]["probs"]) == {"ham", "spam"}
    assert got["sms-int8"]["probs"]["spam"] == pytest.approx(got["sms"]["probs"]["spam"], abs=0.1)


def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(
    minilm_home: Path, tmp_path: Path
) -> None:
    args = ("finetune", "sms_spam", "--limit", "300", "--epochs", "2", "--batch-size", "16")
    args += ("--eval-every", "6", "--checkpoint-every", "6", "--seed", "3", "--json")
    other = tmp_path / "other"
    (other / "assets").mkdir(parents=True)
    (other / "assets" / MINILM_FP32.name).symlink_to(minilm_home / "assets" / MINILM_FP32.name)
    whole = _slm(other, *args, "--out", "run")
    assert whole.returncode == 0, whole.stderr
    env = {**os.environ, "SLMKIT_HOME": str(minilm_home)}
    proc = subprocess.Popen([*SLM, *args, "--out", "run"], env=env, stdout=subprocess.DEVNULL)
    state = minilm_home / "runs" / "run" / "state.pt"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run ended before its first checkpoint"
    assert Store(minilm_home, Settings(home=minilm_home)).path("run") is None
    resumed = _slm(minilm_home, *args, "--out", "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(whole.stdout)["metrics"], json.loads(resumed.stdout)["metrics"]
    assert b["steps"] == a["steps"] and b["held_accuracy"] == a["held_accuracy"]
    assert b["test_accuracy"] == a["test_accuracy"]
