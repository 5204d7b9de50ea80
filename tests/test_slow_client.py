"""A client that stops reading mid-stream does not slow the others (a real model)."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slmkit.catalog.store import Store
from slmkit.serve import ModelProvider, ServerSettings, create_app
from tests.fakes import stalled_stream
from tests.test_serve import LiveServer

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def live(real_store: Store, smollm_path: Path) -> Iterator[tuple[LiveServer, ModelProvider]]:
    provider = ModelProvider(real_store, n_seq=4, n_ctx=4096)
    app = create_app(ServerSettings(send_timeout=0.5), provider)
    server = LiveServer(app, sndbuf=8192)  # small, fixed: the stall shows within ~80 KB
    yield server, provider
    server.close()
    provider.close()


def _stream(url: str, i: int, counts: list[int], ends: list[float]) -> None:
    """One reading client: a streamed story, its tokens counted from the usage event."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Write a long story about ship {i}."}],
        "max_tokens": 256,
        "temperature": 0.8,
        "seed": None,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    counts[i] = usage["completion_tokens"]
    ends[i] = time.perf_counter()


def _others_rate(url: str) -> float:
    counts, ends = [0, 0, 0], [0.0, 0.0, 0.0]
    start = time.perf_counter()
    threads = [threading.Thread(target=_stream, args=(url, i, counts, ends)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(counts)
    return sum(counts) / (max(ends) - start)


def _fourth_reading(url: str, body: dict, stop: threading.Event) -> None:  # type: ignore[type-arg]
    """The fourth client reading its stream at full speed until told to stop."""
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=120
    ) as r:
        for _ in r.iter_lines():
            if stop.is_set():
                return


def _others_beside(server: LiveServer, body: dict, kind: str) -> float:  # type: ignore[type-arg]
    if kind == "alone":
        return _others_rate(server.url)
    if kind == "stalled":
        sock = stalled_stream(server.port, body)
        try:
            return _others_rate(server.url)
        finally:
            sock.close()
    stop = threading.Event()
    reader = threading.Thread(target=_fourth_reading, args=(server.url, body, stop))
    reader.start()
    try:
        return _others_rate(server.url)
    finally:
        stop.set()
        reader.join()


def test_a_stalled_reader_does_not_slow_the_other_streams(
    live: tuple[LiveServer, ModelProvider],
) -> None:
    """Three streams beside a fourth client that stops reading mid-stream make at least 0.9x
    the tokens/s they make beside the same client reading at full speed (a server that
    waited on the stalled socket would stop them), and the stalled stream is cancelled
    after --send-timeout."""
    server, provider = live
    _others_rate(server.url)  # warm-up: the model loads
    essay = "Write a very long essay about the history of the world, with many chapters."
    fourth = {
        "model": MODEL,
        "messages": [{"role": "user", "content": essay}],  # goes on to max_tokens
        "max_tokens": 1500,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 20,  # ~3 KB an event: the server's writes back up within ~30 tokens
    }
    rates: dict[str, list[float]] = {"alone": [], "reading": [], "stalled": []}
    for _ in range(3):  # interleaved rounds; the medians are compared
        for kind in rates:
            rates[kind].append(_others_beside(server, fourth, kind))
            deadline = time.monotonic() + 30
            while provider.get(MODEL).engine.running:  # the fourth was cancelled
                assert time.monotonic() < deadline
                time.sleep(0.05)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["stalled"] / med["reading"]
    print(  # figures for docs/trust.md (pytest -s)
        f"others' tok/s, medians of 3: alone {med['alone']:.1f}, beside a reading fourth "
        f"{med['reading']:.1f}, beside a stalled fourth {med['stalled']:.1f}; "
        f"stalled/reading {ratio:.3f}, stalled/alone {med['stalled'] / med['alone']:.3f}"
    )
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "slmkit_stalled_streams_total 3.0" in metrics
    assert ratio >= 0.9, rates
