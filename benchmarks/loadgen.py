"""A bounded mixed load against a running server, for the soak benchmark and the CI test:
streaming chat, chat abandoned mid-stream, embeddings, zero-shot classifications (scored in
the model's engine beside the chats) and over-long prompts, from many concurrent clients for
a fixed time, sampling the server's RSS."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MIX = {"chat": 45, "disconnect": 15, "embed": 15, "classify": 10, "too_long": 15}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class LoadResult:
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def server_errors(self) -> int:
        return sum(v for k, v in self.counts.items() if k.split(":")[1].startswith("5"))

    @property
    def transport_errors(self) -> int:
        return sum(v for k, v in self.counts.items() if "transport-error" in k)

    def unexpected(self) -> dict[str, int]:
        """Outcomes other than an answer or a clean refusal (429 busy, 400 too long)."""
        ok = {"chat:200", "disconnect:200", "embed:200", "classify:200", "too_long:400"}
        ok |= {f"{k}:429" for k in MIX}
        return {k: v for k, v in self.counts.items() if k not in ok}


async def _chat(c: httpx.AsyncClient, url: str, model: str, disconnect: bool, seed: float) -> int:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 64,
        "temperature": 0.7,
        "messages": [{"role": "user", "content": f"Say something about {seed}"}],
    }
    async with c.stream("POST", url + "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code
        events, done = 0, False
        async for line in r.aiter_lines():
            events += line.startswith("data: ")
            done = done or line == "data: [DONE]"
            if disconnect and events >= 3:
                return 200  # leaving the block closes the connection mid-stream
        return 200 if done else 599  # a stream that ended without [DONE]


async def _classify(c: httpx.AsyncClient, url: str, model: str, seed: float) -> int:
    """Two texts, two labels; a 200 must carry a probability per label for each text."""
    texts = [f"WINNER! Claim your prize {seed:.4f} now", "See you at lunch tomorrow?"]
    body = {"model": model, "input": texts, "labels": ["ham", "spam"]}
    r = await c.post(url + "/v1/classify", json=body)
    if r.status_code == 200:
        data = r.json()["data"]
        if len(data) != 2 or any(abs(sum(d["scores"].values()) - 1) > 1e-6 for d in data):
            return 598  # an answer of the wrong shape
    return r.status_code


async def _worker(
    i: int, url: str, model: str, headers: dict[str, str], until: float, out: LoadResult
) -> None:
    rng = random.Random(i)
    async with httpx.AsyncClient(timeout=120, headers=headers) as c:
        while time.monotonic() < until:
            kind = rng.choices(list(MIX), list(MIX.values()))[0]
            try:
                if kind in ("chat", "disconnect"):
                    status = await _chat(c, url, model, kind == "disconnect", rng.random())
                elif kind == "embed":
                    body = {"model": "all-minilm-l6-v2", "input": ["hello", "world"]}
                    status = (await c.post(url + "/v1/embeddings", json=body)).status_code
                elif kind == "classify":
                    status = await _classify(c, url, model, rng.random())
                else:
                    msgs = [{"role": "user", "content": "word " * 9000}]
                    body2 = {"model": model, "messages": msgs}
                    status = (await c.post(url + "/v1/chat/completions", json=body2)).status_code
                out.counts[f"{kind}:{status}"] += 1
                if status == 429:
                    await asyncio.sleep(0.5)
            except httpx.HTTPError as e:
                out.counts[f"{kind}:transport-error:{type(e).__name__}"] += 1


async def run_load(
    url: str,
    model: str,
    *,
    clients: int = 64,
    duration: float = 120.0,
    pid: int | None = None,
    api_key: str | None = None,
    sample_every: float = 5.0,
) -> LoadResult:
    """Drive `clients` concurrent clients for `duration` seconds; sample pid's RSS."""
    out = LoadResult()
    until = time.monotonic() + duration
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def sample() -> None:
        t0 = time.monotonic()
        while pid is not None and time.monotonic() < until:
            out.rss.append((time.monotonic() - t0, rss_mb(pid)))
            await asyncio.sleep(sample_every)

    workers = [_worker(i, url, model, headers, until, out) for i in range(clients)]
    await asyncio.gather(sample(), *workers)
    return out
