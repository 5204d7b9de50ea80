"""The guard: a pure ASGI middleware (streams pass through untouched) that checks the body
limit and API keys before any handler runs, so a refused request uses no model time, and
counts every /v1/ response by status for /metrics, whoever produced it."""

from __future__ import annotations

import collections
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import RequestTooLargeError
from slmkit.serve.errors import error_body
from slmkit.serve.metrics import Metrics

# vLLM's tokenizer endpoints sit at the root (lm-evaluation-harness's remote tokenizer).
TOKENIZER_PATHS = ("/tokenize", "/detokenize", "/tokenizer_info")


@dataclass
class KeyLimits:
    """Per key (or per client address when the server has no keys): requests in the last
    60 s, and requests in flight, streams included until their last byte is sent."""

    per_minute: int | None = None
    concurrent: int | None = None
    recent: dict[str, collections.deque[float]] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)

    def refuse(self, who: str) -> tuple[str, int] | None:
        """(message, Retry-After seconds) if `who` is over a limit, else None (and counted)."""
        now = time.monotonic()
        if self.concurrent and self.active.get(who, 0) >= self.concurrent:
            return f"{self.concurrent} requests already in flight for this key", 1
        if self.per_minute:
            window = self.recent.setdefault(who, collections.deque())
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self.per_minute:
                wait = int(60 - (now - window[0])) + 1
                return f"over {self.per_minute} requests per minute for this key", wait
            window.append(now)
        self.active[who] = self.active.get(who, 0) + 1
        return None

    def done(self, who: str) -> None:
        self.active[who] -= 1
        if not self.active[who]:
            del self.active[who]


class Guard:
    def __init__(
        self,
        app: Any,
        keys: tuple[str, ...],
        max_body: int,
        metrics: Metrics,
        limits: KeyLimits | None = None,
    ) -> None:
        self.app, self.keys, self.max_body, self.metrics = app, keys, max_body, metrics
        self.limits = limits or KeyLimits()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            msg = f"body over {self.max_body} bytes"
            await self._refuse(send, 413, msg, "invalid_request_error", "request_too_large")
            return
        api = scope["path"].startswith("/v1/") or scope["path"] in TOKENIZER_PATHS
        if api and self.keys and not self._key_ok(headers.get("authorization", "")):
            msg = "invalid or missing API key"
            await self._refuse(send, 401, msg, "authentication_error", "invalid_api_key")
            return
        if not api:
            await self.app(scope, _limited(receive, self.max_body), send)
            return
        who = headers.get("authorization", "") or str((scope.get("client") or ("?",))[0])
        over = self.limits.refuse(who)
        if over:
            msg, wait = over
            await self._refuse(send, 429, msg, "rate_limit_error", "rate_limit", retry=wait)
            return
        try:
            await self._counted(scope, receive, send)
        finally:
            self.limits.done(who)

    async def _counted(self, scope: Any, receive: Any, send: Any) -> None:
        status = 500  # if the app raises before it answers, the server sends a 500

        async def counting_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, _limited(receive, self.max_body), counting_send)
        finally:
            self.metrics.requests.labels(status=str(status)).inc()

    def _key_ok(self, auth: str) -> bool:
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        return any(hmac.compare_digest(given.encode(), k.encode()) for k in self.keys)

    async def _refuse(
        self,
        send: Any,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.metrics.requests.labels(status=str(status)).inc()
        body = json.dumps(error_body(message, type_, code)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if retry is not None:
            headers.append((b"retry-after", str(retry).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _limited(receive: Any, limit: int) -> Any:
    """Wrap receive so a chunked body without Content-Length still stops at the limit."""
    seen = 0

    async def wrapped() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise RequestTooLargeError(f"body over {limit} bytes")
        return message

    return wrapped
