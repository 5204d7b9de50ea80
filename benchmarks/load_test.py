"""Soak test of `slm serve` on loopback: many concurrent clients mixing streaming chat,
mid-stream disconnects, embeddings and over-long prompts, for a bounded time.

Run: .venv/bin/python benchmarks/load_test.py [--clients 64] [--duration 120]

Reports status counts (expects zero 5xx and no transport errors), the server's RSS after
warm-up and at the end (and its growth), /health afterwards, and whether /metrics' request
counts per status equal what the clients saw. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import subprocess
import sys
from pathlib import Path

import httpx
from _servers import free_port, stop, wait_ready
from loadgen import LoadResult, run_load

import slmkit


def report(url: str, res: LoadResult, duration: float) -> None:
    for key in sorted(res.counts):
        print(f"  {key:40} {res.counts[key]}")
    print(
        f"requests {res.total}, 5xx {res.server_errors}, "
        f"transport errors {res.transport_errors}, unexpected {res.unexpected()}"
    )
    warm = [m for t, m in res.rss if t >= min(20, duration / 3)]
    if warm:
        print(
            f"server RSS after warm-up {warm[0]:.0f} MB, max {max(warm):.0f} MB, "
            f"end {warm[-1]:.0f} MB"
        )
        growth = 100 * (warm[-1] - warm[0]) / warm[0]
        print(f"server RSS growth after warm-up: {growth:+.1f} %")
    health = httpx.get(url + "/health", timeout=10)
    print(f"/health after the run: {health.status_code} {health.json()}")
    compare_metrics(url, res)


def compare_metrics(url: str, res: LoadResult) -> None:
    """The server's request counter per status against what the clients saw."""
    seen: collections.Counter[str] = collections.Counter({"200": 1})  # wait_ready's probe
    for key, n in res.counts.items():
        status = key.split(":")[1]
        if status.isdigit():
            seen[status] += n
    served: dict[str, int] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        m = re.match(r'slmkit_requests_total\{status="(\d+)"\} ([0-9.e+]+)', line)
        if m:
            served[m.group(1)] = int(float(m.group(2)))
    same = served == dict(seen)
    print(
        f"/metrics requests by status {served}; clients saw {dict(seen)}: "
        f"{'equal' if same else 'DIFFERENT'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=120)
    args = ap.parse_args()
    store = slmkit.Store()
    store.pull(args.model)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "slm"),
            "serve",
            "--port",
            str(port),
            "--model",
            args.model,
            "--parallel",
            "16",
            "--max-waiting",
            "64",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(url, proc)
        print(f"{args.clients} clients for {args.duration:.0f} s against {url} ({args.model})")
        res = asyncio.run(
            run_load(url, args.model, clients=args.clients, duration=args.duration, pid=proc.pid)
        )
        report(url, res, args.duration)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
