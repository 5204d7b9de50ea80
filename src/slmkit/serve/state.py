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
    from slmkit.tasks.kb import KnowledgeBase

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

    kbs: dict[str, KnowledgeBase] = field(default_factory=dict)

    def knowledge_base(self, name: str) -> KnowledgeBase:
        """A knowledge base opened once and kept while its manifest is unchanged (a KB changed
        by `slm kb add` is reopened at its next request); the server's MiniLM is shared."""
        from slmkit.tasks.kb import KnowledgeBase, kb_root

        store = self.provider.store
        manifest = kb_root(store) / name / "manifest.json"
        stamp = manifest.stat().st_mtime_ns if manifest.is_file() else None
        with self.task_lock:
            kb = self.kbs.get(name)
            if kb is not None and getattr(kb, "stamp", None) == stamp:
                return kb
            if kb is not None:
                self.kbs.pop(name).close()
            emb = self.provider.embedder() if _uses_minilm(store, name) else None
            kb = KnowledgeBase(name, store=store, embedder=emb)
            kb.stamp = stamp  # type: ignore[attr-defined]
            self.kbs[name] = kb
            while len(self.kbs) > MAX_TASK_FNS:
                self.kbs.pop(next(iter(self.kbs))).close()
            return kb

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


def _uses_minilm(store: Any, name: str) -> bool:
    from slmkit.tasks.kb import list_kbs

    return any(m["name"] == name and m["embedder"] == "minilm-int8" for m in list_kbs(store))


def server(request: Request) -> ServerState:
    """FastAPI dependency: the state of the app serving this request."""
    state: ServerState = request.app.state.server
    return state


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (tokenizing, loading a model, a task) in a worker thread."""
    return await asyncio.to_thread(fn, *args)
