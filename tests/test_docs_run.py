"""The `slm` commands from the README and docs/ that need nothing but the store, run for real
as written, from a working directory beside a `shared/data` (as in a checkout), against a
store holding the real models. Every other command is parsed by tests/test_docs_fake.py;
those are left out here because they read files the reader supplies (data.jsonl,
report.txt, tickets.jsonl, ...), run for minutes (fine-tuning, bench, full evaluations), or
serve until stopped (tests/test_serve.py and tests/test_wheel.py cover `slm serve`)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.test_docs_fake import COMMANDS

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data"),
]
SLM = str(Path(sys.executable).parent / "slm")
RUN_AS_WRITTEN = (
    "--version",
    "models",
    "doctor",
    "info ",
    'run smollm2-135m-instruct "',
    "run gemma-3-270m ",
    'classify "I loved it"',
    "embed ",
    "redact ",
    "data ",
    "recommend ",
    "deploy kuberay ",
)
SELECTED = list(dict.fromkeys(c for _, c in COMMANDS if c.startswith(RUN_AS_WRITTEN)))


@pytest.fixture(scope="module")
def sandbox(real_store: object, smollm_path: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A store with the real models and assets (linked) and its own data folder, and a
    working directory whose ../shared/data is this checkout's sibling copy."""
    from slmkit.catalog.store import Store

    store = real_store
    assert isinstance(store, Store)
    for asset in ("all-minilm-l6-v2-int8",):
        subprocess.run([SLM, "pull", asset], check=True, capture_output=True)
    store.pull("gemma-3-270m")
    root = tmp_path_factory.mktemp("docs")
    (root / "home").mkdir()
    for sub in ("models", "assets"):
        (root / "home" / sub).symlink_to(store.root / sub)
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(SHARED_DATA)
    (root / "work").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SLMKIT_DATA_DIR"}
    env["SLMKIT_HOME"] = str(root / "home")
    return root / "work", env


def test_the_selection_covers_the_quick_commands() -> None:
    assert len(SELECTED) >= 15, SELECTED


@pytest.mark.parametrize("command", SELECTED)
def test_doc_command_runs(sandbox: tuple[Path, dict[str, str]], command: str) -> None:
    cwd, env = sandbox
    args = [SLM, *shlex.split(command)]
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"slm {command}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
    assert proc.stdout.strip(), f"slm {command} printed nothing"
    assert "error:" not in proc.stderr, proc.stderr
