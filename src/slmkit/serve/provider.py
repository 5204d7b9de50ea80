"""Loads models on first use, one engine each; evicts idle ones after a keep-alive."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from slmkit.catalog.store import Store
from slmkit.errors import ModelNotFoundError, ModelNotInstalledError, SlmkitError


@dataclass
class Loaded:
    model: Any
    engine: Any
    last_used: float


class ModelProvider:
    """Gives the app a loaded model + engine by id. Injected into create_app (tests may
    pass one holding already-loaded models)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        n_seq: int = 16,
        n_ctx: int = 8192,
        max_waiting: int = 64,
        keep_alive_s: float = 300.0,
        allowed: tuple[str, ...] = (),
    ) -> None:
        self.store = store or Store()
        self.n_seq, self.n_ctx, self.max_waiting = n_seq, n_ctx, max_waiting
        self.keep_alive_s = keep_alive_s
        self.allowed = allowed
        self._loaded: dict[str, Loaded] = {}
        self._lock = threading.Lock()
        self._embedder: Any = None

    def available(self) -> list[str]:
        """Installed decoder models this server may serve."""
        ids = [
            e.id
            for e in self.store.entries()
            if e.kind == "decoder" and e.backend == "llamacpp" and self.store.path(e.id)
        ]
        return [i for i in ids if not self.allowed or i in self.allowed]

    def get(self, model_id: str) -> Loaded:
        """The loaded model, loading it (and its engine) on first use."""
        import slmkit
        from slmkit.engine import Engine
        from slmkit.runtime.llamacpp import LlamaCppBackend

        with self._lock:
            item = self._loaded.get(model_id)
            if item is None:
                if self.allowed and model_id not in self.allowed:
                    raise ModelNotFoundError(f"model {model_id!r} is not served here")
                if self.store.path(model_id) is None:
                    self.store.get(model_id)  # unknown id -> ModelNotFoundError
                    raise ModelNotInstalledError(f"model {model_id!r} is not installed")
                model = slmkit.load(model_id, store=self.store, n_ctx=min(self.n_ctx, 4096))
                backend = model.backend
                if not isinstance(backend, LlamaCppBackend):
                    raise SlmkitError(f"{model_id}: the server needs a llama.cpp model")
                engine = Engine(
                    backend, n_seq=self.n_seq, n_ctx=self.n_ctx, max_waiting=self.max_waiting
                )
                item = Loaded(model, engine, time.monotonic())
                self._loaded[model_id] = item
            item.last_used = time.monotonic()
            return item

    def embedder(self) -> Any:
        from slmkit.tasks.embed import load_embedder

        with self._lock:
            if self._embedder is None:
                self._embedder = load_embedder("minilm-int8", store=self.store)
            return self._embedder

    def evict_idle(self) -> list[str]:
        """Unload models idle longer than keep_alive_s (never one with work in flight)."""
        now = time.monotonic()
        gone = []
        with self._lock:
            for mid, item in list(self._loaded.items()):
                busy = item.engine.running or item.engine.queue_depth
                if not busy and now - item.last_used > self.keep_alive_s:
                    item.engine.close()
                    item.model.close()
                    del self._loaded[mid]
                    gone.append(mid)
        return gone

    def loaded(self) -> dict[str, Loaded]:
        return dict(self._loaded)

    def close(self) -> None:
        with self._lock:
            for item in self._loaded.values():
                item.engine.close()
                item.model.close()
            self._loaded.clear()
