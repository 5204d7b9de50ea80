"""What the routes share, owned by one app (`app.state.server`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request

from slmkit.serve.metrics import Metrics
from slmkit.serve.provider import ModelProvider
from slmkit.serve.streaming import StreamHub
from slmkit.settings import ServerSettings

T = TypeVar("T")


@dataclass
class ServerState:
    settings: ServerSettings
    provider: ModelProvider
    metrics: Metrics
    hub: StreamHub = field(default_factory=StreamHub)


def server(request: Request) -> ServerState:
    """FastAPI dependency: the state of the app serving this request."""
    state: ServerState = request.app.state.server
    return state


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (tokenizing, loading a model, a task) in a worker thread."""
    return await asyncio.to_thread(fn, *args)
