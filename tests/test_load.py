"""A bounded load test of `slm serve` as its own process on loopback: 64 clients mixing
streaming chat, mid-stream disconnects, embeddings and over-long prompts (the 2-minute
soak is benchmarks/load_test.py; this CI version runs for LOAD_SECONDS)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.loadgen import MIX, run_load
from tests.test_serve import KEY, MODEL, free_port, slm_assets

pytestmark = pytest.mark.real_model
LOAD_SECONDS = 30.0


def test_64_clients_mixed_load(real_store: Any, smollm_path: Any, tmp_path: Path) -> None:
    assert slm_assets(real_store)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    slm = Path(sys.executable).parent / "slm"
    env = {**os.environ, "SLMKIT_HOME": str(real_store.root)}
    cmd = [str(slm), "serve", "--port", str(port), "--model", MODEL, "--api-key", KEY]
    log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would block the server
    with log.open("w") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [*cmd, "--parallel", "16", "--max-waiting", "64"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        res = asyncio.run(
            run_load(
                url,
                MODEL,
                clients=64,
                duration=LOAD_SECONDS,
                pid=proc.pid,
                api_key=KEY,
                sample_every=2.0,
            )
        )
        # every request answered or cleanly refused; every kind of request was made
        assert res.unexpected() == {}, res.counts
        assert res.server_errors == 0 and res.transport_errors == 0
        assert {k.split(":")[0] for k in res.counts} == set(MIX)
        assert res.counts["chat:200"] >= 20 and res.counts["classify:200"] >= 3, res.counts
        # memory flat after warm-up (first third of the run)
        warm = [mb for t, mb in res.rss if t >= LOAD_SECONDS / 3]
        assert len(warm) >= 3 and max(warm) - warm[0] < 150, res.rss
        health = httpx.get(url + "/health", timeout=10)
        assert health.status_code == 200 and MODEL in health.json()["loaded"]
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert 'slmkit_requests_total{status="500"}' not in metrics
        assert "Traceback" not in log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
