"""What the routes share, owned by one app (`app.state.server`)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from slmkit.serve.metrics import Metrics
from slmkit.serve.provider import ModelProvider
from slmkit.serve.streaming import StreamHub
from slmkit.settings import ServerSettings

if TYPE_CHECKING:
    from slmkit.tasks.factory import TaskFn

T = TypeVar("T")


MAX_TASK_FNS = 8


@dataclass
class ServerState:
    settings: ServerSettings
    provider: ModelProvider
    metrics: Metrics
    hub: StreamHub = field(default_factory=StreamHub)
    # the generated task routes' built tasks, by task and options (oldest dropped past 8)
    task_fns: dict[str, TaskFn] = field(default_factory=dict)
    task_lock: threading.Lock = field(default_factory=threading.Lock)

    def task_fn(self, name: str, options: dict[str, Any]) -> TaskFn:
        """A registered task built once per distinct options (builds load their models)."""
        from slmkit.tasks import registry

        key = json.dumps([name, options], sort_keys=True, default=str)
        with self.task_lock:
            if key not in self.task_fns:
                self.task_fns[key] = registry.make_task(name, options)
                while len(self.task_fns) > MAX_TASK_FNS:
                    self.task_fns.pop(next(iter(self.task_fns)))
            return self.task_fns[key]


def server(request: Request) -> ServerState:
    """FastAPI dependency: the state of the app serving this request."""
    state: ServerState = request.app.state.server
    return state


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (tokenizing, loading a model, a task) in a worker thread."""
    return await asyncio.to_thread(fn, *args)
