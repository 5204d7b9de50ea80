"""How repeatable are seeded and greedy requests under concurrent traffic?

    python benchmarks/determinism.py [--repeats 20] [--deterministic-greedy]

Starts `slm serve` on loopback, sends the same request `--repeats` times; every other time
three other streams run beside it, and every third time a different seeded request (another
prompt sharing the system prompt, another seed) goes first. Prints how many distinct texts
came back per sampling setting (1 is the goal).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import httpx

MODEL = "smollm2-135m-instruct"


def ask(url: str, content: str, **kw: object) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **kw}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    r.raise_for_status()
    return str(r.json()["choices"][0]["message"]["content"])


def run(url: str, repeats: int, sampling: dict[str, object]) -> int:
    texts = []
    for rep in range(repeats):
        threads = []
        if rep % 2:
            for i in range(3):
                t = threading.Thread(
                    target=ask,
                    args=(url, f"Write a poem ({rep}, {i})."),
                    kwargs={"temperature": 0.8, "max_tokens": 48},
                )
                t.start()
                threads.append(t)
        if rep % 3 == 2:
            ask(url, "Say something nice about the sun.", max_tokens=24, temperature=1.0, seed=rep)
        texts.append(ask(url, "Say something nice about the moon.", max_tokens=16, **sampling))
        for t in threads:
            t.join()
    return len(set(texts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--port", type=int, default=8191)
    ap.add_argument("--deterministic-greedy", action="store_true")
    args = ap.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "slmkit",
        "serve",
        "--model",
        MODEL,
        "--port",
        str(args.port),
        "--parallel",
        "4",
    ]
    if args.deterministic_greedy:
        cmd.append("--deterministic-greedy")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.25)
        for name, sampling in (
            ("seeded, temperature 1.0", {"temperature": 1.0, "seed": 42}),
            ("greedy", {"temperature": 0}),
        ):
            n = run(url, args.repeats, sampling)
            print(
                f"{name}: {n} distinct text(s) in {args.repeats} repeats "
                f"(half of them beside 3 other streams)"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
