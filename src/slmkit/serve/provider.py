"""Loads models on first use, one engine each; evicts idle ones after a keep-alive, and the
least recently used idle ones when loading another would go over a memory budget."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slmkit.catalog.memory import LONG_SEQ, MODEL_CTX, served_bytes
from slmkit.catalog.store import Store
from slmkit.engine import Engine
from slmkit.errors import ModelNotFoundError, ModelNotInstalledError, OverBudgetError
from slmkit.loading import installed_draft, load
from slmkit.model import Model
from slmkit.settings import ServerSettings
from slmkit.tasks.embed import Embedder
from slmkit.tasks.finetuned import EncoderClassifier

__all__ = ["Loaded", "ModelProvider", "OverBudgetError"]

_GRACE_S = 2.0
Loader = Callable[..., Model]  # load(model_id, store=..., n_ctx=...)


@dataclass
class Loaded:
    """A served model: the model (for tokenizing and task endpoints) and its engine."""

    model: Model
    engine: Engine
    last_used: float
    est_bytes: int = 0
    # Redaction of person names uses the model's own context, one request at a time
    # (classify and summarize go through the engine).
    task_lock: threading.Lock = field(default_factory=threading.Lock)
    classifiers: dict[Any, Any] = field(default_factory=dict)  # calibrated once per label set
    classifiers_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def busy(self) -> bool:
        return bool(self.engine.running or self.engine.queue_depth or self.task_lock.locked())


class ModelProvider:
    """Gives the app a loaded model + engine by id. Injected into create_app (tests may
    pass one holding already-loaded models)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        n_seq: int = 16,
        n_ctx: int = 16384,
        per_seq: bool = True,
        max_waiting: int = 64,
        keep_alive_s: float = 300.0,
        allowed: tuple[str, ...] = (),
        memory_budget_bytes: int | None = None,
        loader: Loader = load,
        solo_greedy: bool = False,
        draft: str | None = None,
    ) -> None:
        self.store = store or Store()
        self.draft = draft  # 'auto' or a model id: each engine's draft model
        self.solo_greedy = solo_greedy
        self.loader = loader
        self.n_seq, self.n_ctx, self.max_waiting = n_seq, n_ctx, max_waiting
        self.per_seq = per_seq  # engine KV layout (settings.kv_layout)
        self.keep_alive_s = keep_alive_s
        self.allowed = allowed
        self.memory_budget_bytes = memory_budget_bytes
        self.on_step: Callable[[int], None] | None = None  # engine batch sizes (metrics)
        self.on_draft: Callable[[int, int], None] | None = None  # prompt lookup (metrics)
        self._loaded: dict[str, Loaded] = {}
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._classifiers: dict[str, EncoderClassifier] = {}
        # ids unloaded for the budget, oldest first (the last 100)
        self.evicted: collections.deque[str] = collections.deque(maxlen=100)

    @classmethod
    def from_settings(
        cls, settings: ServerSettings, store: Store | None = None, loader: Loader = load
    ) -> ModelProvider:
        """A provider configured by `slm serve`'s settings; a `draft` id that is unknown or not
        installed is refused here, before the server listens (its vocabulary is checked when
        a model first loads beside it)."""
        budget = settings.memory_budget_mb
        store = store or Store()
        if settings.draft not in (None, "auto"):
            store.get(settings.draft)  # ModelNotFoundError for an unknown id
            if store.path(settings.draft) is None:
                raise ModelNotInstalledError(
                    f"draft model {settings.draft!r} is not installed (slm pull {settings.draft})"
                )
        return cls(
            store,
            n_seq=settings.parallel,
            n_ctx=settings.n_ctx,
            per_seq=settings.kv_layout == "per-seq",
            max_waiting=settings.max_waiting,
            keep_alive_s=settings.keep_alive,
            allowed=settings.models,
            memory_budget_bytes=budget * 2**20 if budget else None,
            loader=loader,
            solo_greedy=settings.deterministic_greedy,
            draft=settings.draft,
        )

    @property
    def model_n_ctx(self) -> int:
        return min(self.n_ctx, MODEL_CTX)

    def estimate_bytes(self, model_id: str) -> int:
        """Estimated RSS of a served model with its draft (catalog/memory.served_bytes)."""
        draft_id = self._draft_for(model_id)
        known = {e.id for e in self.store.entries()}
        draft = self.store.get(draft_id) if draft_id in known else None
        entry = self.store.get(model_id)
        return served_bytes(entry, self.n_ctx, self.per_seq, draft, self.store.path(model_id))

    def _make_room(self, need: int) -> None:
        """Unload least recently used idle models until `need` more bytes fit the budget."""
        budget = self.memory_budget_bytes
        if budget is None:
            return
        if need > budget:
            raise OverBudgetError(
                f"this model needs about {need / 2**20:.0f} MiB, over the server's memory "
                f"budget of {budget / 2**20:.0f} MiB"
            )
        for mid, item in sorted(self._loaded.items(), key=lambda kv: kv[1].last_used):
            if sum(i.est_bytes for i in self._loaded.values()) + need <= budget:
                return
            # A model handed out moments ago may not have submitted its work yet.
            if not item.busy and time.monotonic() - item.last_used > _GRACE_S:
                self._unload(mid)
                self.evicted.append(mid)
        used = sum(i.est_bytes for i in self._loaded.values())
        if used + need > budget:
            raise OverBudgetError(
                f"loading needs about {need / 2**20:.0f} MiB; {used / 2**20:.0f} MiB of the "
                f"{budget / 2**20:.0f} MiB budget is held by models still in use"
            )

    def _unload(self, model_id: str) -> None:
        item = self._loaded.pop(model_id)
        item.engine.close()
        item.model.close()

    def available(self) -> list[str]:
        """Installed decoder models this server may serve."""
        ids = [e.id for e in self.store.entries() if e.kind == "decoder" and self.store.path(e.id)]
        return [i for i in ids if not self.allowed or i in self.allowed]

    def get(self, model_id: str) -> Loaded:
        """The loaded model, loading it (and its engine) on first use."""
        with self._lock:
            item = self._loaded.get(model_id)
            if item is None:
                item = self._loaded[model_id] = self._load(model_id)
            item.last_used = time.monotonic()
            return item

    def _load(self, model_id: str) -> Loaded:
        if self.allowed and model_id not in self.allowed:
            raise ModelNotFoundError(f"model {model_id!r} is not served here")
        if self.store.path(model_id) is None:
            self.store.get(model_id)  # unknown id -> ModelNotFoundError
            raise ModelNotInstalledError(f"model {model_id!r} is not installed")
        need = self.estimate_bytes(model_id)
        self._make_room(need)
        model = self.loader(
            model_id, store=self.store, n_ctx=self.model_n_ctx, draft=self._draft_for(model_id)
        )
        try:
            engine = Engine(
                model.backend,
                n_seq=self.n_seq,
                n_ctx=self.n_ctx,
                max_waiting=self.max_waiting,
                on_step=self._observe_step,
                solo_greedy=self.solo_greedy,
                per_seq=self.per_seq,
                long_ctx=self.model_n_ctx if self.per_seq else None,
                long_seq=LONG_SEQ,
                draft=model.draft.backend if model.draft is not None else None,
            )
        except Exception:
            model.close()
            raise
        engine.on_draft = self._observe_draft
        return Loaded(model, engine, time.monotonic(), need)

    def _draft_for(self, model_id: str) -> str | None:
        """The draft to load beside `model_id`: with 'auto', its first installed compatible
        one if it has any (a model without one is served plainly)."""
        if self.draft != "auto":
            return self.draft
        return installed_draft(self.store.get(model_id), self.store)

    def _observe_step(self, n: int) -> None:
        if self.on_step is not None:
            self.on_step(n)

    def _observe_draft(self, drafted: int, kept: int) -> None:
        if self.on_draft is not None:
            self.on_draft(drafted, kept)

    def classifier(self, model_id: str) -> EncoderClassifier | None:
        """The fine-tuned classifier of that id (loaded once), or None for other models."""
        from slmkit.tasks.finetuned import classifier_entry, load_classifier

        with self._lock:
            if model_id in self._classifiers:
                return self._classifiers[model_id]
            if classifier_entry(model_id, self.store) is None:
                return None
            if self.allowed and model_id not in self.allowed:
                raise ModelNotFoundError(f"model {model_id!r} is not served here")
            clf = self._classifiers[model_id] = load_classifier(model_id, self.store)
            return clf

    def embedder(self) -> Embedder:
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
                if not item.busy and now - item.last_used > self.keep_alive_s:
                    self._unload(mid)
                    gone.append(mid)
        return gone

    def loaded(self) -> dict[str, Loaded]:
        return dict(self._loaded)

    def close(self) -> None:
        with self._lock:
            for mid in list(self._loaded):
                self._unload(mid)
