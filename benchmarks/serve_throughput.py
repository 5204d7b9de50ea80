"""Server throughput: aggregate generated tokens/s and TTFT at 1, 4 and 16 concurrent
streaming clients, slmkit's server vs llama-cpp-python's server, same model, same run.

Run: .venv/bin/python benchmarks/serve_throughput.py [--clients 1 4 16] [--tokens 128]
Needs `pip install 'llama-cpp-python[server]==0.3.36'` for the comparison server, which is
run with `--interrupt_requests False` (by default it aborts a running stream whenever
another request arrives, which breaks concurrent clients) and serves one request at a time.
Both servers listen on 127.0.0.1 and are stopped at the end. Each client sends one
streaming chat request at a time (different prompts, temperature 0, max_tokens fixed),
for --rounds requests; tokens are counted from the stream's usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _servers import free_port, stop, wait_ready

import slmkit

TOPICS = [
    "cats",
    "the sea",
    "mountains",
    "a robot",
    "trains",
    "coffee",
    "winter",
    "a city",
    "music",
    "a forest",
    "the moon",
    "bread",
    "rivers",
    "a library",
    "birds",
    "football",
]


async def one(
    client: httpx.AsyncClient, url: str, model: str, topic: str, n: int
) -> tuple[float, int]:
    body = {
        "model": model,
        "stream": True,
        "temperature": 0,
        "max_tokens": n,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"Write a long essay about {topic}."}],
    }
    t0 = time.perf_counter()
    ttft, tokens, chunks = 0.0, 0, 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            for ch in data.get("choices", []):
                if (ch.get("delta") or {}).get("content"):
                    chunks += 1
                    if not ttft:
                        ttft = time.perf_counter() - t0
    return ttft, tokens or chunks


async def load(url: str, model: str, clients: int, rounds: int, n: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=600) as client:

        async def worker(w: int) -> list[tuple[float, int]]:
            return [
                await one(client, url, model, TOPICS[(w + r) % len(TOPICS)], n)
                for r in range(rounds)
            ]

        t0 = time.perf_counter()
        results = [
            x for xs in await asyncio.gather(*[worker(w) for w in range(clients)]) for x in xs
        ]
        dt = time.perf_counter() - t0
    ttfts = sorted(t for t, _ in results)
    return {
        "tok_s": sum(k for _, k in results) / dt,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    store = slmkit.Store()
    path = store.pull(args.model)
    threads = str(store.settings.n_threads)
    bin_dir = Path(sys.executable).parent
    servers = {}
    p1, p2 = free_port(), free_port()
    servers["slmkit"] = (
        f"http://127.0.0.1:{p1}",
        subprocess.Popen(
            [
                str(bin_dir / "slm"),
                "serve",
                "--port",
                str(p1),
                "--model",
                args.model,
                "--parallel",
                "16",
                "--n-ctx",
                "8192",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("SLM_BENCH_LOG", os.devnull), "w"),  # noqa: SIM115
        ),
    )
    servers["llama-cpp-python"] = (
        f"http://127.0.0.1:{p2}",
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(path),
                "--host",
                "127.0.0.1",
                "--port",
                str(p2),
                "--n_ctx",
                "4096",
                # Its default cuts a running stream when another request arrives.
                "--interrupt_requests",
                "False",
                "--n_threads",
                threads,
                "--n_threads_batch",
                threads,
                "--model_alias",
                args.model,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        ),
    )
    try:
        for url, proc in servers.values():
            wait_ready(url, proc)
            asyncio.run(load(url, args.model, 1, 1, 8))  # warm-up: loads the model
        print(
            f"model {args.model}, {args.tokens} tokens per request, "
            f"{args.rounds} requests per client"
        )
        print(f"{'clients':>7} {'server':>18} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9}")
        table: dict[tuple[str, int], dict[str, float]] = {}
        for c in args.clients:
            for name, (url, _) in servers.items():
                r = asyncio.run(load(url, args.model, c, args.rounds, args.tokens))
                table[(name, c)] = r
                print(
                    f"{c:>7} {name:>18} {r['tok_s']:8.1f} "
                    f"{r['ttft_p50']:8.2f}s {r['ttft_p95']:8.2f}s"
                )
        for c in args.clients:
            ratio = table[("slmkit", c)]["tok_s"] / table[("llama-cpp-python", c)]["tok_s"]
            print(f"{c:>3} clients: slmkit / llama-cpp-python server = {ratio:.2f}x")
    finally:
        for _, proc in servers.values():
            stop(proc)


if __name__ == "__main__":
    main()
