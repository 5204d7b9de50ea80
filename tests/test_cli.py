"""The `slm` command as a user runs it: real subprocesses on the real default model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_model
SLM = str(Path(sys.executable).parent / "slm")
MODEL = "smollm2-135m-instruct"


def slm(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SLM, *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module", autouse=True)
def _installed(smollm_path: Path) -> None:
    """Make sure the default model is in the store before any CLI call."""


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") or lines[0].startswith("Error:"), lines[0]
    return lines[0]


def test_run_answers_paris() -> None:
    proc = slm("run", MODEL, "What is the capital of France?", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout


def test_run_reads_stdin_and_reports_stats() -> None:
    proc = slm(
        "run", MODEL, "--temperature", "0", "--stats", stdin="What is the capital of France?"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    m = re.search(r"peak RSS (\d+) MB", proc.stderr)
    assert m, proc.stderr
    assert int(m.group(1)) < 400  # the memory budget for `slm run` on this model


def test_run_path_never_imports_torch() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom slmkit.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['run', '{MODEL}', 'hi', '--max-tokens', '2'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_raw_completion_and_stop() -> None:
    proc = slm(
        "run",
        MODEL,
        "1, 2, 3, 4,",
        "--raw",
        "--temperature",
        "0",
        "--stop",
        " 7",
        "--max-tokens",
        "30",
    )
    assert proc.returncode == 0, proc.stderr
    assert " 5" in proc.stdout and " 7" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (("run", "no-such-model", "hi"), None, "unknown model"),
        (("run", "gemma-3-27b", "hi"), None, "unknown model"),
        (("run", MODEL, "hi", "--temperature", "-1"), None, "temperature"),
        (("run", MODEL, "hi", "--top-p", "2"), None, "top_p"),
        (("run", MODEL, "hi", "--max-tokens", "-3"), None, "max_tokens"),
        (("run", MODEL, "   "), None, "prompt is empty"),
        (("run", MODEL), "", "prompt is empty"),
        (("run", MODEL, "word " * 5000), None, "context window"),
        (("run", "llama-3.2-1b-instruct", "hi"), None, "slm pull"),  # in the catalog, never pulled
        (("pull", "no-such-model"), None, "unknown model"),
        (("info", "nope"), None, "unknown model"),
        (("rm", "nope"), None, "not installed"),
    ],
)
def test_bad_input_gives_one_error_line(
    args: tuple[str, ...], stdin: str | None, fragment: str
) -> None:
    line = one_error_line(slm(*args, stdin=stdin))
    assert fragment in line


def test_gemma_base_refuses_chat_on_cli(real_store) -> None:  # type: ignore[no-untyped-def]
    real_store.pull("gemma-3-270m")
    line = one_error_line(slm("run", "gemma-3-270m", "hi"))
    assert "no chat template" in line
    ok = slm(
        "run",
        "gemma-3-270m",
        "Q: What is the capital of France?\nA:",
        "--raw",
        "--temperature",
        "0",
        "--max-tokens",
        "10",
    )
    assert ok.returncode == 0 and "Paris" in ok.stdout


def test_import_rejects_bad_files(tmp_path: Path, smollm_path: Path) -> None:
    env_home = tmp_path / "home"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    for path in (bad, tmp_path / "missing.gguf"):
        proc = subprocess.run(
            [SLM, "import", str(path)],
            capture_output=True,
            text=True,
            env={"SLMKIT_HOME": str(env_home), "PATH": ""},
            timeout=60,
        )
        assert proc.returncode != 0
        assert "error" in proc.stderr.lower()
    assert not (env_home / "models").exists() or not any((env_home / "models").rglob("*.gguf"))


def test_import_for_a_pinned_id_checks_the_file(tmp_path: Path, smollm_path: Path) -> None:
    env = {"SLMKIT_HOME": str(tmp_path), "PATH": ""}
    proc = subprocess.run(
        [SLM, "import", str(smollm_path), "--id", "gemma-3-270m"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "expected 253113024" in one_error_line(proc)
    assert not any(tmp_path.rglob("*.gguf"))


def test_import_then_run_by_new_id(tmp_path: Path, smollm_path: Path) -> None:
    env = {"SLMKIT_HOME": str(tmp_path), "PATH": ""}
    proc = subprocess.run(
        [SLM, "import", str(smollm_path), "--id", "my-model"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "llama" in proc.stdout
        and "context 8192" in proc.stdout
        and "chat template: yes" in proc.stdout
    )
    listing = json.loads(
        subprocess.run(
            [SLM, "models", "--json"], capture_output=True, text=True, env=env, timeout=60
        ).stdout
    )
    mine = [m for m in listing["models"] if m["id"] == "my-model"]
    assert mine and mine[0]["installed"] and mine[0]["size_bytes"] == smollm_path.stat().st_size
    run = subprocess.run(
        [SLM, "run", "my-model", "What is the capital of France?", "--temperature", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "Paris" in run.stdout


def test_models_and_info_json() -> None:
    listing = json.loads(slm("models", "--json").stdout)
    ids = {m["id"]: m for m in listing["models"]}
    assert ids[MODEL]["installed"] is True
    assert ids["mobilebert"]["sources"] == ["hf"]
    small = json.loads(slm("info", MODEL, "--json", "--n-ctx", "512").stdout)
    big = json.loads(slm("info", MODEL, "--json", "--n-ctx", "8192").stdout)
    assert big["ram_estimate_bytes"] > small["ram_estimate_bytes"] > small["size_bytes"]
    assert small["license"] == "apache-2.0" and small["installed"] is True


def test_interactive_chat_keeps_history_and_resets() -> None:
    script = (
        "/system You are a helpful assistant.\nWhat is the capital of France?\n"
        "/reset\nWhat is the capital of Japan?\n/exit\n"
    )
    proc = slm("chat", MODEL, "--temperature", "0", "--max-tokens", "40", stdin=script)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout and "Tokyo" in proc.stdout
    assert "history cleared" in proc.stderr


def test_demo_tour() -> None:
    proc = slm("demo", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    assert re.search(r"\d+ tokens at [\d.]+ tokens/s", proc.stdout)
    assert re.search(r"peak memory \d+ MB", proc.stdout)
