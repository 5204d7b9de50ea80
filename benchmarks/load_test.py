"""Soak test of `slm serve` on loopback: many concurrent clients mixing streaming chat,
mid-stream disconnects, embeddings and over-long prompts, for a bounded time.

Run: .venv/bin/python benchmarks/load_test.py [--clients 64] [--duration 120]

Reports status counts (expects zero 5xx and no transport errors), the server's RSS after
warm-up and at the end, and /health afterwards. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _servers import free_port, stop, wait_ready

import slmkit


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def chat(c: httpx.AsyncClient, url: str, model: str, disconnect: bool) -> int:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 64,
        "temperature": 0.7,
        "messages": [{"role": "user", "content": f"Say something about {random.random()}"}],
    }
    async with c.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code
        n = 0
        async for line in r.aiter_lines():
            n += line.startswith("data: ")
            if disconnect and n >= 3:
                break  # leaving the block closes the connection mid-stream
        return 200


async def worker(
    i: int, url: str, model: str, until: float, stats: collections.Counter[str]
) -> None:
    rng = random.Random(i)
    async with httpx.AsyncClient(timeout=120) as c:
        while time.monotonic() < until:
            kind = rng.choices(["chat", "disconnect", "embed", "too_long"], [50, 20, 15, 15])[0]
            try:
                if kind in ("chat", "disconnect"):
                    status = await chat(c, url, model, kind == "disconnect")
                elif kind == "embed":
                    status = (
                        await c.post(
                            url + "/v1/embeddings",
                            json={"model": "all-minilm-l6-v2", "input": ["hello", "world"]},
                        )
                    ).status_code
                else:
                    status = (
                        await c.post(
                            url + "/v1/chat/completions",
                            json={
                                "model": model,
                                "messages": [{"role": "user", "content": "word " * 9000}],
                            },
                        )
                    ).status_code
                stats[f"{kind}:{status}"] += 1
                if status == 429:
                    await asyncio.sleep(0.5)
            except httpx.HTTPError as e:
                stats[f"{kind}:transport-error:{type(e).__name__}"] += 1


async def run(url: str, model: str, clients: int, duration: float, pid: int) -> None:
    stats: collections.Counter[str] = collections.Counter()
    until = time.monotonic() + duration
    samples: list[tuple[float, float]] = []

    async def sample() -> None:
        t0 = time.monotonic()
        while time.monotonic() < until:
            samples.append((time.monotonic() - t0, rss_mb(pid)))
            await asyncio.sleep(5)

    await asyncio.gather(sample(), *[worker(i, url, model, until, stats) for i in range(clients)])
    for key in sorted(stats):
        print(f"  {key:40} {stats[key]}")
    fives = sum(v for k, v in stats.items() if ":5" in k)
    errors = sum(v for k, v in stats.items() if "transport-error" in k)
    warm = [m for t, m in samples if t >= min(20, duration / 3)]
    print(f"requests {sum(stats.values())}, 5xx {fives}, transport errors {errors}")
    if warm:
        print(
            f"server RSS after warm-up {warm[0]:.0f} MB, max {max(warm):.0f} MB, "
            f"end {warm[-1]:.0f} MB"
        )
    health = httpx.get(url + "/health", timeout=10)
    print(f"/health after the run: {health.status_code} {health.json()}")


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
        asyncio.run(run(url, args.model, args.clients, args.duration, proc.pid))
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
