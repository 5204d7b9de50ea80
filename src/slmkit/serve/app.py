"""`create_app(settings, provider)`: the OpenAI-compatible API, keys, metrics, chat page."""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from slmkit.errors import (
    ContextOverflowError,
    EmptyPromptError,
    InvalidOptionsError,
    ModelNotFoundError,
    ModelNotInstalledError,
    SlmkitError,
)
from slmkit.runtime.base import Chunk, TokenLogprob
from slmkit.serve.metrics import Metrics
from slmkit.serve.provider import ModelProvider, OverBudgetError
from slmkit.serve.schemas import (
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    EmbeddingRequest,
    SummarizeRequest,
)

T = TypeVar("T")
PAGE = Path(__file__).with_name("page.html")
MAX_CLASSIFY_TEXTS = 256
log = logging.getLogger("slmkit.serve")


class ServerSettings(BaseSettings):
    """`slm serve` settings (env prefix SLMKIT_SERVE_)."""

    model_config = SettingsConfigDict(env_prefix="SLMKIT_SERVE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    default_max_tokens: int = Field(default=256, ge=1)
    log_prompts: bool = False


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.headers = headers or {}


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _map_error(e: Exception) -> ApiError:
    from slmkit.engine import EngineFullError

    if isinstance(e, ApiError):
        return e
    if isinstance(e, EngineFullError):
        return ApiError(
            429,
            str(e),
            "rate_limit_error",
            "queue_full",
            {"Retry-After": str(max(1, int(e.retry_after)))},
        )
    if isinstance(e, OverBudgetError):
        return ApiError(503, str(e), "server_error", "over_memory_budget", {"Retry-After": "5"})
    if isinstance(e, ModelNotFoundError | ModelNotInstalledError):
        return ApiError(404, str(e), "invalid_request_error", "model_not_found")
    if isinstance(e, ContextOverflowError):
        return ApiError(400, str(e), "invalid_request_error", "context_length_exceeded")
    if isinstance(e, InvalidOptionsError | EmptyPromptError | SlmkitError | ValueError):
        return ApiError(400, str(e))
    return ApiError(500, "internal error", "server_error")


def create_app(
    settings: ServerSettings | None = None, provider: ModelProvider | None = None
) -> Any:
    """Build the FastAPI app; the model provider is injected (tests pass their own)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or ServerSettings()
    provider = provider or ModelProvider()
    metrics = Metrics(provider)
    app = FastAPI(title="slmkit", docs_url=None, redoc_url=None, lifespan=_lifespan(provider))
    app.state.provider, app.state.settings, app.state.metrics = provider, settings, metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(e.message, e.type, e.code), e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if e.status_code < 500 else "server_error"
        return JSONResponse(_error_body(str(e.detail), kind), e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"msg": "invalid request", "loc": ()}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(
            _error_body(
                f"{where}: {first['msg']}" if where else str(first["msg"]),
                "invalid_request_error",
            ),
            400,
        )

    app.add_middleware(Guard, settings=settings, metrics=metrics)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "loaded": sorted(provider.loaded())}

    @app.get("/metrics")
    async def prom() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        ids = await _off_loop(provider.available)
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "slmkit"} for i in ids],
        }

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> Any:
        return await _generate(body, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        return await _generate(body, chat=False)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not t.strip() for t in texts):
            raise ApiError(400, "input must be non-empty text")
        vecs = await _off_loop(_embed, provider, body.model, texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vecs)
        ]
        return {
            "object": "list",
            "model": body.model,
            "data": data,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_CLASSIFY_TEXTS:
            raise ApiError(400, f"input must hold 1 to {MAX_CLASSIFY_TEXTS} texts")
        preds = await _off_loop(_classify, provider, settings, body, texts)
        return {
            "object": "list",
            "model": body.model,
            "data": [
                {"object": "classification", "index": i, "label": p.label, "scores": p.probs}
                for i, p in enumerate(preds)
            ],
        }

    @app.post("/v1/summarize")
    async def summarize(body: SummarizeRequest) -> dict[str, Any]:
        res = await _off_loop(_summarize, provider, settings, body)
        return {
            "object": "summary",
            "model": body.model,
            "summary": res.summary,
            "document_tokens": res.document_tokens,
            "tokens_read": res.tokens_read,
            "chunks": res.chunks,
            "levels": res.levels,
            "coverage": res.coverage,
        }

    async def _generate(body: ChatRequest | CompletionRequest, chat: bool) -> Any:
        item, tokens, options = await _off_loop(_prepare, provider, settings, body, chat)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        streams = [_engine_stream(item.engine, tokens, options, metrics) for _ in range(body.n)]
        if body.stream:
            first = [await _first(s) for s in streams]  # 429 before the 200 is sent
            sse = _sse(rid, body, chat, first, streams, len(tokens))
            return StreamingResponse(sse, media_type="text/event-stream")
        results = await asyncio.gather(*[_collect(s) for s in streams])
        return _response(rid, body, chat, results, len(tokens))

    return app


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (tokenizing, loading a model, a task) in a worker thread; its
    slmkit errors become OpenAI-shaped API errors."""
    try:
        return await asyncio.to_thread(fn, *args)
    except Exception as e:
        raise _map_error(e) from e


def _encode(vec: Any, fmt: str) -> Any:
    """OpenAI's encodings: a float list, or base64 of little-endian float32."""
    import base64

    import numpy as np

    if fmt == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vec]


def _lifespan(provider: ModelProvider) -> Any:
    """Unload idle models every so often while the server runs; unload all at shutdown."""
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def evictor() -> None:
            while True:
                await asyncio.sleep(min(30.0, max(1.0, provider.keep_alive_s / 2)))
                await asyncio.to_thread(provider.evict_idle)

        task = asyncio.create_task(evictor())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(provider.close)

    return lifespan


class Guard:
    """Pure ASGI middleware (streams pass through untouched): body limit and API keys are
    checked before any handler runs, so a refused request uses no model time. It also
    counts every /v1/ response by status for /metrics, whoever produced it."""

    def __init__(self, app: Any, settings: ServerSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._refuse(send, 413, f"body over {limit} bytes", "invalid_request_error")
            return
        if self.settings.api_keys and scope["path"].startswith("/v1/"):
            auth = headers.get("authorization", "")
            given = auth[7:].strip() if auth.startswith("Bearer ") else ""
            keys = self.settings.api_keys
            if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
                await self._refuse(
                    send,
                    401,
                    "invalid or missing API key",
                    "authentication_error",
                    "invalid_api_key",
                )
                return
        if not scope["path"].startswith("/v1/"):
            await self.app(scope, _limited(receive, limit), send)
            return
        status = 500  # if the app raises before it answers, the server sends a 500

        async def counting_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, _limited(receive, limit), counting_send)
        finally:
            self.metrics.requests.labels(status=str(status)).inc()

    async def _refuse(
        self, send: Any, status: int, message: str, type_: str, code: str | None = None
    ) -> None:
        self.metrics.requests.labels(status=str(status)).inc()
        body = json.dumps(_error_body(message, type_, code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
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
                from starlette.exceptions import HTTPException

                raise HTTPException(413, f"body over {limit} bytes")
        return message

    return wrapped


def _embed(provider: ModelProvider, model_id: str, texts: list[str]) -> Any:
    if model_id in ("all-minilm-l6-v2", "minilm", "minilm-int8", "text-embedding-minilm"):
        return provider.embedder().embed(texts)
    return provider.get(model_id).model.embed(texts)


def _classify(
    provider: ModelProvider, settings: ServerSettings, body: ClassifyRequest, texts: list[str]
) -> Any:
    from slmkit.tasks.classify import LikelihoodClassifier

    item = provider.get(body.model)
    if settings.log_prompts:
        log.info("classify %s labels=%s texts=%r", body.model, body.labels, texts)
    key = (tuple(body.labels), body.instruction, body.calibrate)
    with item.task_lock:
        clf = item.classifiers.get(key)
        if clf is None:
            clf = LikelihoodClassifier(
                item.model, body.labels, instruction=body.instruction, calibrate=body.calibrate
            )
            if len(item.classifiers) >= 32:
                item.classifiers.pop(next(iter(item.classifiers)))
            item.classifiers[key] = clf
        return clf.predict(texts)


def _summarize(provider: ModelProvider, settings: ServerSettings, body: SummarizeRequest) -> Any:
    from slmkit.tasks.summarize import Summarizer

    item = provider.get(body.model)
    if settings.log_prompts:
        log.info("summarize %s document=%r", body.model, body.input)
    with item.task_lock:
        return Summarizer(item.model, max_words=body.max_words)(body.input)


def _prepare(provider: ModelProvider, settings: ServerSettings, body: Any, chat: bool) -> Any:
    """Validate, template and tokenize in a worker thread (this can load a model)."""
    from slmkit.options import make_options

    item = provider.get(body.model)
    model = item.model
    max_tokens = (
        getattr(body, "max_completion_tokens", None)
        or body.max_tokens
        or settings.default_max_tokens
    )
    grammar = _grammar(body.response_format) if chat and body.response_format else None
    if chat:
        n_lp = (body.top_logprobs or 0) if body.logprobs else None
    else:
        n_lp = body.logprobs
    options = make_options(
        logprobs=n_lp,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=0,
        min_p=0.0,
        seed=body.seed,
        stop=body.stop,
        grammar=grammar,
    )
    if chat:
        msgs = [{"role": m.role, "content": m.content} for m in body.messages]
        tokens = model.backend.tokenize(model.format_chat(msgs))
    else:
        tokens = model.backend.tokenize(body.prompt)
    if settings.log_prompts:
        log.info("%s prompt: %r", body.model, body.messages if chat else body.prompt)
    limit = min(item.engine.n_ctx, model.n_ctx)
    if len(tokens) + max_tokens > limit:
        raise ContextOverflowError(
            f"prompt is {len(tokens)} tokens + max_tokens {max_tokens} > context {limit}",
            prompt_tokens=len(tokens),
            n_ctx=limit,
            max_tokens=max_tokens,
        )
    return item, tokens, options


def _grammar(fmt: Any) -> str | None:
    from slmkit.tasks.extract import grammar_for, schema_of

    if fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return grammar_for({"type": "object"})
    if fmt.json_schema is None:
        raise ApiError(400, "response_format json_schema needs a json_schema object")
    return grammar_for(schema_of(fmt.json_schema.schema_))


class _Dispatcher:
    """Hands chunks from the engine thread to the event loop with one wake-up for all that
    arrive together (an engine step emits one chunk per running sequence), instead of one
    call_soon_threadsafe per chunk: on 2 cores every syscall is taken from the decode."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: collections.deque[tuple[asyncio.Queue[Chunk], Chunk]] = collections.deque()
        self.lock = threading.Lock()
        self.scheduled = False

    def put(self, queue: asyncio.Queue[Chunk], chunk: Chunk) -> None:
        self.pending.append((queue, chunk))
        with self.lock:
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self.lock:
            self.scheduled = False
        while self.pending:
            queue, chunk = self.pending.popleft()
            queue.put_nowait(chunk)


_dispatchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Dispatcher] = (
    weakref.WeakKeyDictionary()
)


async def _engine_stream(
    engine: Any, tokens: list[int], options: Any, metrics: Metrics
) -> AsyncGenerator[Chunk, None]:
    """Submit to the engine and yield its chunks; cancels the sequence if abandoned."""
    loop = asyncio.get_running_loop()
    dispatcher = _dispatchers.get(loop)
    if dispatcher is None:
        dispatcher = _dispatchers[loop] = _Dispatcher(loop)
    queue: asyncio.Queue[Chunk] = asyncio.Queue()
    put = dispatcher.put
    try:
        handle = engine.submit(tokens, options, lambda c: put(queue, c))
    except Exception as e:
        raise _map_error(e) from e
    metrics.tokens_in.inc(len(tokens))
    finished = False
    last = time.perf_counter()
    first = True
    try:
        while True:
            chunk = await queue.get()
            now = time.perf_counter()
            if chunk.text or chunk.token_ids:
                (metrics.ttft if first else metrics.itl).observe(now - last)
                first, last = False, now
                metrics.tokens_out.inc(len(chunk.token_ids))
            yield chunk
            if chunk.finish_reason is not None:
                finished = True
                return
    finally:
        if not finished:
            handle.cancel()


async def _first(stream: AsyncIterator[Chunk]) -> Chunk:
    return await stream.__anext__()


async def _collect(stream: AsyncIterator[Chunk]) -> tuple[str, Chunk, list[TokenLogprob]]:
    parts: list[str] = []
    lps: list[TokenLogprob] = []
    async for c in stream:
        parts.append(c.text)
        lps.extend(c.logprobs)
        if c.finish_reason == "error":
            raise ApiError(500, "generation failed in the engine", "server_error")
        if c.finish_reason is not None:
            return "".join(parts), c, lps
    raise ApiError(500, "generation ended early", "server_error")


def _logprobs_json(lps: Sequence[TokenLogprob], chat: bool, wanted: bool) -> Any:
    """OpenAI's logprobs objects: chat `{"content": [...]}`, completions token arrays."""
    if not wanted:
        return None
    if chat:
        return {
            "content": [
                {
                    "token": t.token,
                    "logprob": t.logprob,
                    "bytes": list(t.token.encode()),
                    "top_logprobs": [
                        {"token": a, "logprob": b, "bytes": list(a.encode())} for a, b in t.top
                    ],
                }
                for t in lps
            ]
        }
    offsets, pos = [], 0
    for t in lps:
        offsets.append(pos)
        pos += len(t.token)
    return {
        "tokens": [t.token for t in lps],
        "token_logprobs": [t.logprob for t in lps],
        "top_logprobs": [dict(t.top) for t in lps],
        "text_offset": offsets,
    }


def _wants_logprobs(body: Any, chat: bool) -> bool:
    return bool(body.logprobs) if chat else body.logprobs is not None


def _finish(reason: str | None) -> str | None:
    return {"stop": "stop", "length": "length", "cancelled": "stop"}.get(reason or "", None)


def _usage(prompt_tokens: int, finals: list[Chunk]) -> dict[str, int]:
    out = sum(c.stats.completion_tokens for c in finals if c.stats)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": out,
        "total_tokens": prompt_tokens + out,
    }


def _response(
    rid: str,
    body: Any,
    chat: bool,
    results: list[tuple[str, Chunk, list[TokenLogprob]]],
    n_prompt: int,
) -> dict[str, Any]:
    choices = []
    wanted = _wants_logprobs(body, chat)
    for i, (text, final, lps) in enumerate(results):
        choice: dict[str, Any] = {
            "index": i,
            "finish_reason": _finish(final.finish_reason),
            "logprobs": _logprobs_json(lps, chat, wanted),
        }
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choices.append(choice)
    return {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": choices,
        "usage": _usage(n_prompt, [f for _, f, _ in results]),
    }


async def _sse(
    rid: str,
    body: Any,
    chat: bool,
    first: list[Chunk],
    streams: list[AsyncGenerator[Chunk, None]],
    n_prompt: int,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `data: [DONE]`."""
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    wanted = _wants_logprobs(body, chat)

    def event(i: int, c: Chunk, role: bool = False) -> str:
        if c.finish_reason == "error":  # the status line is sent: report in the stream
            err = _error_body("generation failed in the engine", "server_error")
            return f"data: {json.dumps(err)}\n\n"
        if chat:
            delta: dict[str, Any] = (
                {"role": "assistant", "content": c.text} if role else {"content": c.text}
            )
            choice: dict[str, Any] = {
                "index": i,
                "delta": delta,
                "logprobs": _logprobs_json(c.logprobs, chat, wanted),
                "finish_reason": _finish(c.finish_reason),
            }
        else:
            choice = {
                "index": i,
                "text": c.text,
                "logprobs": _logprobs_json(c.logprobs, chat, wanted),
                "finish_reason": _finish(c.finish_reason),
            }
        payload = {
            "id": rid,
            "object": kind,
            "created": created,
            "model": body.model,
            "choices": [choice],
        }
        return f"data: {json.dumps(payload)}\n\n"

    finals: list[Chunk] = []

    def tail() -> Iterator[str]:
        if body.stream_options and body.stream_options.include_usage:
            usage = {
                "id": rid,
                "object": kind,
                "created": created,
                "model": body.model,
                "choices": [],
                "usage": _usage(n_prompt, finals),
            }
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"

    for i, head in enumerate(first):
        yield event(i, head, role=True)
        if head.finish_reason is not None:
            finals.append(head)
    if len(first) == 1:  # the usual case: read the one stream directly, no relay task
        try:
            if first[0].finish_reason is None:
                async for item in streams[0]:
                    if item.finish_reason is not None:
                        finals.append(item)
                    yield event(0, item)
        finally:
            await streams[0].aclose()  # cancels the engine sequence if the client left
        for line in tail():
            yield line
        return
    queue: asyncio.Queue[tuple[int, Chunk | None]] = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            async for c in streams[i]:
                await queue.put((i, c))
        finally:
            await queue.put((i, None))

    tasks = [asyncio.create_task(pump(i)) for i, h in enumerate(first) if h.finish_reason is None]
    try:
        pending = len(tasks)
        while pending:
            i, got = await queue.get()
            if got is None:
                pending -= 1
                continue
            if got.finish_reason is not None:
                finals.append(got)
            yield event(i, got)
        for line in tail():
            yield line
    finally:
        for t in tasks:
            t.cancel()  # a pump's cancellation cancels its engine sequence
        await asyncio.gather(*tasks, return_exceptions=True)
