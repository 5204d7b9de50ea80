"""`create_app(settings, provider)`: assembles the server from its parts (routers, guard,
error mapping, lifespan) and holds no state of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from slmkit.serve import errors, handlers, routes_openai, routes_ops, routes_tasks
from slmkit.serve.guard import Guard, KeyLimits
from slmkit.serve.metrics import Metrics
from slmkit.serve.provider import ModelProvider
from slmkit.serve.state import ServerState
from slmkit.serve.streaming import StreamHub
from slmkit.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(
    settings: ServerSettings | None = None, provider: ModelProvider | None = None
) -> FastAPI:
    """Build the FastAPI app; the model provider is injected (tests pass their own)."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    settings = settings or ServerSettings()
    provider = provider or ModelProvider.from_settings(settings)
    metrics = Metrics(provider)
    if settings.log_prompts:
        handlers.redact_logs()  # personal data never reaches a log handler
    app = FastAPI(title="slmkit", docs_url=None, redoc_url=None, lifespan=_lifespan(provider))
    hub = StreamHub(settings.send_timeout)
    app.state.server = ServerState(settings, provider, metrics, hub)
    errors.install(app)
    for module in (routes_openai, routes_tasks, routes_ops):
        app.include_router(module.router)
    app.include_router(routes_openai.tokenizer_router)
    app.include_router(routes_tasks.task_router())
    app.mount("/static", StaticFiles(directory=routes_ops.STATIC), name="static")
    app.add_middleware(
        Guard,
        keys=settings.all_keys(),
        max_body=settings.max_body_bytes,
        metrics=metrics,
        limits=KeyLimits(settings.key_requests_per_minute, settings.key_concurrent),
    )
    return app


def _lifespan(provider: ModelProvider) -> Any:
    """Unload idle models every so often while the server runs; unload all at shutdown."""

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
