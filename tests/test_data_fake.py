"""`slm data`: built-in datasets pulled into the store from a local copy (../shared/data) or
the network (a loopback server standing in for GitHub, serving upstream files rebuilt from
the local copy), verified, atomic and kill-safe; bad input gives one error line."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slmkit.catalog.data_store import DataStore
from slmkit.catalog.datasets import DATASETS, dataset
from slmkit.settings import Settings
from tests.conftest import SHARED_DATA

KILLS = int(os.environ.get("SLMKIT_KILLS", "3"))
pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def slm(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "SLMKIT_DATA_DIR"}
    full.update(SLMKIT_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "slmkit", *args], env=full, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def only_complete(home: Path) -> list[str]:
    """Datasets the store lists, each checked file by file against the catalog pins."""
    store = DataStore(home, Settings(home=home))
    for name in store.installed():
        for f in dataset(name).files:
            path = store.parent / name / f.name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256, path
    return sorted(store.installed())


def leftovers(home: Path) -> list[str]:
    data = home / "data"
    return sorted(p.name for p in data.iterdir() if p.name.startswith(".")) if data.is_dir() else []


def test_list_pull_info_rm(tmp_path: Path) -> None:
    listed = json.loads(slm(tmp_path, "data", "list", "--json").stdout)["datasets"]
    assert [d["name"] for d in listed] == [d.name for d in DATASETS]
    assert not any(d["installed"] for d in listed)
    proc = slm(tmp_path, "data", "pull", "sst2", "--from", str(SHARED_DATA))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("license: unknown")  # shown before the pull
    assert "sha256 verified" in proc.stdout
    assert only_complete(tmp_path) == ["sst2"]
    listed = json.loads(slm(tmp_path, "data", "list", "--json").stdout)["datasets"]
    assert [d["name"] for d in listed if d["installed"]] == ["sst2"]
    info = json.loads(slm(tmp_path, "data", "info", "sst2", "--json").stdout)
    assert info["installed"]["source"] == f"local:{SHARED_DATA.resolve()}"
    assert info["installed"]["license"] == "unknown" and info["upstream"][0]["sha256"]
    text = slm(tmp_path, "data", "list").stdout
    assert text.count("sst2") == 1 and "CC-BY-4.0" in text
    assert slm(tmp_path, "data", "rm", "sst2").stdout.strip() == "removed sst2"
    assert only_complete(tmp_path) == [] and leftovers(tmp_path) == []


def test_pull_all_from_a_local_copy(tmp_path: Path) -> None:
    proc = slm(tmp_path, "data", "pull", "--all", "--from", str(SHARED_DATA))
    assert proc.returncode == 0, proc.stderr
    assert only_complete(tmp_path) == sorted(d.name for d in DATASETS)
    again = slm(tmp_path, "data", "pull", "sst2", "qmsum")
    assert again.stdout.count("is already installed") == 2
    err = one_error(slm(tmp_path, "data", "pull"))
    assert "give NAME... or --all" in err


def test_a_dataset_folder_itself_is_a_source(tmp_path: Path) -> None:
    proc = slm(tmp_path, "data", "pull", "banking77", "--from", str(SHARED_DATA / "banking77"))
    assert proc.returncode == 0, proc.stderr
    assert only_complete(tmp_path) == ["banking77"]


def test_bad_input_one_error_line_nothing_installed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    err = one_error(slm(home, "data", "pull", "sst3"))
    assert "unknown dataset 'sst3' (did you mean sst2?)" in err
    tampered = tmp_path / "copy" / "sst2"
    tampered.mkdir(parents=True)
    (tampered / "train.jsonl").write_bytes((SHARED_DATA / "sst2" / "train.jsonl").read_bytes())
    valid = (SHARED_DATA / "sst2" / "validation.jsonl").read_text()
    (tampered / "validation.jsonl").write_text(valid.replace("positive", "negative", 1))
    err = one_error(slm(home, "data", "pull", "sst2", "--from", str(tampered.parent)))
    assert "is not the pinned sst2 test file" in err and "nothing installed" in err
    (tampered / "validation.jsonl").unlink()
    err = one_error(slm(home, "data", "pull", "sst2", "--from", str(tampered.parent)))
    assert "has no sst2/validation.jsonl (the test split of sst2)" in err
    err = one_error(slm(home, "data", "pull", "sst2", "--from", str(tmp_path / "nowhere")))
    assert "is not a folder" in err
    assert only_complete(home) == [] and leftovers(home) == []


def test_eval_without_the_data_names_data_pull(tmp_path: Path) -> None:
    err = one_error(slm(tmp_path, "eval", "sst2", "--limit", "5"))
    assert "`slm data pull sst2`" in err
    err = one_error(slm(tmp_path, "eval", "banking77", "--method", "head"))
    assert "`slm data pull banking77`" in err


def test_data_dir_variable_installs_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmkit.tasks.data import builtin_task

    monkeypatch.setenv("SLMKIT_HOME", str(tmp_path))
    monkeypatch.setenv("SLMKIT_DATA_DIR", str(SHARED_DATA))
    texts, labels = builtin_task("sms_spam").load("test", limit=3)  # type: ignore[call-arg]
    assert len(texts) == 3 and set(labels) <= {"ham", "spam"}
    assert only_complete(tmp_path) == ["sms_spam"]


# --- the network source, with a loopback server in GitHub's place --------------------------


def upstream_files() -> dict[str, bytes]:
    """Upstream files rebuilt from the stored JSONL: SST-2's TSVs (GLUE's header and trailing
    space) and the SMS Spam Collection (every row, by id, `label<TAB>text`, no final newline).
    Their sha256 equal the upstream pins, which the pull checks, so serving them exercises the
    converters (the SMS one redoes the seeded, grouped split) on exactly the upstream bytes."""

    def rows(name: str, split: str) -> list[dict[str, object]]:
        path = SHARED_DATA / name / dataset(name).file(split).name
        return [json.loads(ln) for ln in path.read_text().splitlines()]

    out = {}
    for up in dataset("sst2").upstream:
        lines = rows("sst2", "train" if up.path.endswith("train.tsv") else "test")
        body = "text\tlabel\n" + "".join(f"{r['text']} \t{r['label']}\n" for r in lines)
        out[f"/{up.repo}/{up.commit}/{up.path}"] = body.encode()
    (up,) = dataset("sms_spam").upstream
    sms = sorted(
        rows("sms_spam", "train") + rows("sms_spam", "test"), key=lambda r: int(str(r["id"]))
    )
    body = "\n".join(f"{r['label_text']}\t{r['text']}" for r in sms)
    out[f"/{up.repo}/{up.commit}/{up.path}"] = body.encode()
    return out


@pytest.fixture(scope="module")
def github() -> Iterator[str]:
    files = upstream_files()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(0, len(body), 1 << 16):
                    self.wfile.write(body[i : i + (1 << 16)])
                    time.sleep(0.01)  # ~0.6 s for train.tsv: kills land mid-download
            except (BrokenPipeError, ConnectionResetError):
                pass  # a killed client

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ["sst2", "sms_spam"])
def test_network_pull_rebuilds_and_verifies(tmp_path: Path, github: str, name: str) -> None:
    proc = slm(tmp_path, "data", "pull", name, SLMKIT_DATA_BASE_URL=github)
    assert proc.returncode == 0, proc.stderr
    assert only_complete(tmp_path) == [name]
    info = json.loads(slm(tmp_path, "data", "info", name, "--json").stdout)
    assert info["installed"]["source"] == f"github:{dataset(name).upstream[0].repo}"


def test_unreachable_or_missing_network_source_fails_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    t0 = time.perf_counter()
    err = one_error(slm(tmp_path, "data", "pull", "sst2", SLMKIT_DATA_BASE_URL=closed))
    assert time.perf_counter() - t0 < 60  # no retry loop (bounded only: the box is shared)
    assert "cannot download" in err and "--from DIR" in err and "SLMKIT_DATA_DIR" in err
    err = one_error(slm(tmp_path, "data", "pull", "qmsum_qa", SLMKIT_DATA_BASE_URL=closed))
    assert "no network source" in err and "--from DIR" in err
    assert only_complete(tmp_path) == [] and leftovers(tmp_path) == []


def test_kills_during_pull(tmp_path: Path, github: str) -> None:
    """kill -9 at random points of `slm data pull` (download, rebuild, verification,
    manifest, rename); after each, nothing half-written is listed, and the next pull
    cleans what the killed one left and works."""
    home = tmp_path / "home"
    rng = random.Random(3)
    env = {k: v for k, v in os.environ.items() if k != "SLMKIT_DATA_DIR"}
    env.update(SLMKIT_HOME=str(home), SLMKIT_DATA_BASE_URL=github)
    for i in range(KILLS * 2):
        args = ["data", "pull", "sst2", "--force"]
        if i % 2:  # half the kills during a local copy, half during a download
            args += ["--from", str(SHARED_DATA)]
        proc = subprocess.Popen([sys.executable, "-m", "slmkit", *args], env=env)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert set(only_complete(home)) <= {"sst2"}
    final = subprocess.run(
        [sys.executable, "-m", "slmkit", "data", "pull", "sst2", "--force"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr
    assert only_complete(home) == ["sst2"] and leftovers(home) == []
