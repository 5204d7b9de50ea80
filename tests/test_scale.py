"""Batch jobs on a real model and real data: locally and on a local Ray cluster (one per
test session, 2 CPUs), the same predictions both ways; a Ray worker killed mid-job and a
local run killed mid-way both end with every row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmkit.catalog.store import Store
from slmkit.scale import BatchJob, run_batch
from slmkit.tasks.data import dataset_file

ray = pytest.importorskip("ray")
MODEL = "smollm2-135m-instruct"
OPTS = {"model_id": MODEL, "labels": "spam,ham"}


@pytest.fixture(scope="module")
def sms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 96 rows of the SMS spam test split (real data), ids kept."""
    lines = dataset_file("sms_spam", "test").read_text().splitlines()[:96]
    path = tmp_path_factory.mktemp("sms") / "sms96.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pids")


@pytest.fixture(scope="module")
def local_ray(real_store: Store, smollm_path: Path, pid_dir: Path) -> Iterator[None]:
    env = {"SLMKIT_HOME": str(real_store.root), "SLMKIT_N_THREADS": "1"}
    env["SLMKIT_BATCH_PID_DIR"] = str(pid_dir)  # workers say where they are (to be killed)
    ray.init(
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield
    ray.shutdown()


def rows(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_ray_job_equals_the_local_run(local_ray: None, sms: Path, tmp_path: Path) -> None:
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    a = run_batch(BatchJob("classify", sms, local, OPTS, batch_size=16))
    b = run_batch(BatchJob("classify", sms, on_ray, OPTS, batch_size=16, workers=2), "local")
    assert a["rows_written"] == b["rows_written"] == 96 and b["ran_on"] == "ray (local)"
    want = {r["id"]: r for r in rows(local)}
    got = rows(on_ray)
    assert sorted(r["id"] for r in got) == sorted(want)  # every input row, once
    ids_in = [json.loads(x)["id"] for x in sms.read_text().splitlines()]
    assert sorted(ids_in) == sorted(want)
    for r in got:
        assert r["label"] == want[r["id"]]["label"]
        for k, p in r["probs"].items():
            assert p == pytest.approx(want[r["id"]]["probs"][k], abs=1e-3)


def test_a_killed_ray_worker_loses_and_repeats_nothing(
    local_ray: None, sms: Path, tmp_path: Path, pid_dir: Path
) -> None:
    out = tmp_path / "ray.jsonl"
    before = set(pid_dir.iterdir())
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = [p for p in pid_dir.iterdir() if p not in before]
            if new and out.exists() and out.read_text().count("\n") >= 8:
                pid = int(new[0].read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(out.read_text().count("\n"))  # rows done when it died
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    job = BatchJob("classify", sms, out, OPTS, batch_size=8, workers=2)
    run_batch(job, "local")
    killer.join()
    assert killed and killed[0] < 96, "no worker was killed mid-job"
    ids = [r["id"] for r in rows(out)]
    assert len(ids) == len(set(ids)) == 96  # every row exactly once


def test_a_killed_local_run_resumes_without_duplicates(
    real_store: Store, smollm_path: Path, sms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "local.jsonl"
    cmd = [sys.executable, "-m", "slmkit", "batch", "classify", str(sms), str(out)]
    cmd += ["--model", MODEL, "--labels", "spam,ham", "--batch-size", "8"]
    env = {**os.environ, "SLMKIT_HOME": str(real_store.root)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_text().count("\n") >= 16):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = out.read_text().count("\n")
    assert 16 <= part < 96
    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows_already_done"] == part and summary["rows_written"] == 96 - part
    ids = [r["id"] for r in rows(out)]
    assert len(ids) == len(set(ids)) == 96


def test_the_http_app_on_ray_serve(local_ray: None) -> None:
    """`slm serve --ray`'s application: same routes, keys and metrics through Ray Serve's
    proxy, the replica loading the model itself (offline guard on in the replica)."""
    import httpx
    from ray import serve

    from slmkit.scale.ray_serve import application
    from slmkit.settings import ServerSettings
    from tests.test_serve import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = ServerSettings(api_keys=("k-1",), models=(MODEL,), parallel=4, n_ctx=2048)
    serve.run(application(settings), name="slmkit", route_prefix="/", blocking=False)
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k-1"}
    try:
        assert httpx.get(f"{url}/v1/models", timeout=60).status_code == 401
        ids = [m["id"] for m in httpx.get(f"{url}/v1/models", headers=auth).json()["data"]]
        assert ids == [MODEL]
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}]}
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={**body, "max_tokens": 8, "temperature": 0},
            headers=auth,
            timeout=120,
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={**body, "max_tokens": 8, "stream": True},
            headers=auth,
            timeout=120,
        ) as s:
            lines = [x for x in s.iter_lines() if x.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) >= 3
        metrics = httpx.get(f"{url}/metrics", headers=auth).text
        assert 'slmkit_requests_total{status="200"}' in metrics
    finally:
        serve.shutdown()
