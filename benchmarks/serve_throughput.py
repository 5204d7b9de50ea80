"""Server throughput: aggregate generated tokens/s and TTFT at 1, 4 and 16 concurrent
streaming clients, slmkit's server vs llama-cpp-python's server vs llama.cpp's own C++
llama-server (-np 16), same model, same run; plus the single-stream reference of `slm run`.

Run: .venv/bin/python benchmarks/serve_throughput.py [--clients 1 4 16] [--tokens 128]
Needs `pip install 'llama-cpp-python[server]==0.3.36'` for the llama-cpp-python server, which
is run with `--interrupt_requests False` (by default it aborts a running stream whenever
another request arrives, which breaks concurrent clients) and serves one request at a time.
llama-server is built once from the llama-cpp-python sdist's vendored llama.cpp into
~/.cache/slmkit-bench (cmake + a C++ compiler; several minutes); --no-llama-server skips it.
All servers listen on 127.0.0.1 and are stopped at the end. Each client sends one
streaming chat request at a time (different prompts, temperature 0, max_tokens fixed),
for --rounds requests; tokens are counted from the stream's usage.

The `slm run` reference is the same requests, one at a time, through slmkit's Python API
in this process (what `slm run` does after its ~0.4 s start): tokens / wall time per
request, prefill included, exactly as the 1-client server figure counts them.
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
from importlib import metadata
from pathlib import Path

import httpx
from _servers import build_llama_server, free_port, stop, wait_ready

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
    # A fresh connection per request: a pooled keep-alive connection that the server has
    # just timed out would fail a request through no fault of the server.
    limits = httpx.Limits(max_keepalive_connections=0)
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker(w: int) -> list[tuple[float, int]]:
            out = []
            for r in range(rounds):
                try:
                    out.append(await one(client, url, model, TOPICS[(w + r) % len(TOPICS)], n))
                except httpx.HTTPError as e:
                    errors.append(f"{type(e).__name__}: {e}")
            return out

        t0 = time.perf_counter()
        results = [
            x for xs in await asyncio.gather(*[worker(w) for w in range(clients)]) for x in xs
        ]
        dt = time.perf_counter() - t0
    if errors:
        print(f"  {url}: {len(errors)} failed requests, first: {errors[0]}")
    ttfts = sorted(t for t, _ in results) or [float("nan")]
    return {
        "tok_s": sum(k for _, k in results) / dt,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
    }


def slm_run_reference(model_id: str, rounds: int, n: int) -> float:
    """Tokens/s of the 1-client requests made in-process, one at a time (see docstring)."""
    model = slmkit.load(model_id)
    try:
        model.chat("Hi", max_tokens=4)  # warm-up
        tokens, secs = 0, 0.0
        for r in range(rounds):
            t0 = time.perf_counter()
            out = model.chat(
                f"Write a long essay about {TOPICS[r % len(TOPICS)]}.",
                temperature=0,
                max_tokens=n,
            )
            secs += time.perf_counter() - t0
            tokens += out.stats.completion_tokens
        return tokens / secs
    finally:
        model.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    ap.add_argument("--no-llama-server", action="store_true", help="skip llama.cpp's server")
    ap.add_argument("--only", nargs="+", help="run only these servers (names as printed)")
    ap.add_argument("--no-reference", action="store_true", help="skip the slm run comparison")
    ap.add_argument(
        "--before",
        metavar="SRC",
        help="also serve slmkit from another source tree (e.g. a worktree of an older commit's "
        "src/), as 'slmkit before', in the same rotation: a change's before/after in one run",
    )
    args = ap.parse_args()
    store = slmkit.Store()
    path = store.pull(args.model)
    threads = str(store.settings.n_threads)
    slm = [str(Path(sys.executable).parent / "slm"), "serve", "--model", args.model]
    slm += ["--parallel", "16", "--n-ctx", "8192"]
    log = open(os.environ.get("SLM_BENCH_LOG", os.devnull), "w")  # noqa: SIM115
    commands: dict[str, list[str]] = {
        # the default: 8192 / 16 cells per sequence, like llama-server's slots
        "slmkit": [*slm, "--port", "{port}"],
        # one KV cache shared by the 16 sequences (any request may use it all)
        "slmkit shared": [*slm, "--kv-layout", "shared", "--port", "{port}"],
        "llama-cpp-python": [sys.executable, "-m", "llama_cpp.server", "--model", str(path)]
        + ["--host", "127.0.0.1", "--port", "{port}", "--n_ctx", "4096"]
        # Its default cuts a running stream when another request arrives.
        + ["--interrupt_requests", "False", "--n_threads", threads]
        + ["--n_threads_batch", threads, "--model_alias", args.model],
    }
    envs: dict[str, dict[str, str]] = {}
    if args.before:
        commands["slmkit before"] = [*slm, "--port", "{port}"]
        envs["slmkit before"] = {**os.environ, "PYTHONPATH": args.before}
    binary = None
    if not args.no_llama_server:  # the llama.cpp that the installed llama-cpp-python vendors
        version = metadata.version("llama-cpp-python")
        cache = Path.home() / ".cache" / "slmkit-bench" / f"llama-server-{version}"
        binary = build_llama_server(version, cache)
    if binary is not None:
        ls = [str(binary), "-m", str(path), "--host", "127.0.0.1", "--port", "{port}"]
        ls += ["-np", "16", "-c", "8192", "-t", threads, "-tb", threads]
        ls += ["-a", args.model, "--no-webui", "--log-disable"]
        commands["llama-server"] = ls  # its default with -np 16: 512 cells per slot
        commands["llama-server -kvu"] = [*ls, "-kvu"]  # one shared cache, like slmkit's
    pairs = [("slmkit", n) for n in ("llama-cpp-python", "llama-server", "llama-server -kvu")]
    pairs += [("slmkit shared", "llama-server -kvu"), ("slmkit", "slmkit shared")]
    pairs += [("slmkit before", "llama-server"), ("slmkit", "slmkit before")]
    if args.only:
        commands = {k: v for k, v in commands.items() if k in args.only}
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for name, cmd in commands.items():
        port = str(free_port())
        servers[name] = (
            f"http://127.0.0.1:{port}",
            subprocess.Popen(
                [port if c == "{port}" else c for c in cmd],
                stdout=subprocess.DEVNULL,
                stderr=log if name.startswith("slmkit") else subprocess.DEVNULL,
                env=envs.get(name),
            ),
        )
    try:
        for url, proc in servers.values():
            wait_ready(url, proc)
            asyncio.run(load(url, args.model, 1, 1, 8))  # warm-up: loads the model
        print(
            f"model {args.model}, {args.tokens} tokens per request, "
            f"{args.rounds} requests per client, median of {args.repeats} interleaved repeats"
        )
        print(f"{'clients':>7} {'server':>18} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9}")
        table: dict[tuple[str, int], dict[str, float]] = {}
        for c in args.clients:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            for _ in range(args.repeats):  # servers take turns, so all see the same load
                for name, (url, _) in servers.items():
                    runs[name].append(
                        asyncio.run(load(url, args.model, c, args.rounds, args.tokens))
                    )
            for name, rs in runs.items():
                r = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                table[(name, c)] = r
                spread = ", ".join(f"{x['tok_s']:.0f}" for x in rs)
                print(
                    f"{c:>7} {name:>18} {r['tok_s']:8.1f} "
                    f"{r['ttft_p50']:8.2f}s {r['ttft_p95']:8.2f}s   (runs: {spread})"
                )
        for c in args.clients:
            for ours, other in pairs:
                if ours in servers and other in servers:
                    ratio = table[(ours, c)]["tok_s"] / table[(other, c)]["tok_s"]
                    print(f"{c:>3} clients: {ours} / {other} = {ratio:.2f}x")
        # 1 client vs `slm run`, interleaved so both see the same machine load
        if args.no_reference or "slmkit" not in servers:
            return
        url = servers["slmkit"][0]
        ratios = []
        for _ in range(args.repeats):
            one = asyncio.run(load(url, args.model, 1, args.rounds, args.tokens))["tok_s"]
            ref = slm_run_reference(args.model, args.rounds, args.tokens)
            ratios.append(one / ref)
            print(f"1 client: server {one:.1f} tok/s, slm run {ref:.1f} tok/s -> {one / ref:.2f}x")
        print(f"1 client / slm run, median of {args.repeats}: {statistics.median(ratios):.2f}x")
    finally:
        for _, proc in servers.values():
            stop(proc)
        log.close()


if __name__ == "__main__":
    main()
