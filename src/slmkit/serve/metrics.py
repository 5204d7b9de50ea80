"""Prometheus metrics, on a registry owned by the app (no global state)."""

from __future__ import annotations

from typing import Any


class Metrics:
    def __init__(self, provider: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "slmkit_requests", "HTTP API requests by status", ["status"], registry=r
        )
        self.tokens_in = Counter("slmkit_prompt_tokens", "Prompt tokens received", registry=r)
        self.tokens_out = Counter("slmkit_completion_tokens", "Tokens generated", registry=r)
        self.stalled = Counter(
            "slmkit_stalled_streams",
            "Streams cancelled because the client read nothing for --send-timeout seconds",
            registry=r,
        )
        self.ttft = Histogram(
            "slmkit_time_to_first_token_seconds",
            "Time to first token",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.itl = Histogram(
            "slmkit_inter_token_seconds",
            "Time between streamed tokens",
            registry=r,
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
        )
        self.batch = Histogram(
            "slmkit_batch_size",
            "Sequences sampled per engine step (decode batch size)",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        provider.on_step = self.batch.observe
        drafted = Counter(
            "slmkit_draft_tokens", "Prompt-lookup tokens drafted in the engine", registry=r
        )
        kept = Counter("slmkit_draft_accepted_tokens", "Drafted tokens kept", registry=r)

        def on_draft(n: int, k: int) -> None:
            drafted.inc(n)
            kept.inc(k)

        provider.on_draft = on_draft
        queue = Gauge("slmkit_queue_depth", "Requests waiting for a sequence slot", registry=r)
        running = Gauge("slmkit_running_sequences", "Sequences in the batch", registry=r)
        queue.set_function(lambda: sum(i.engine.queue_depth for i in provider.loaded().values()))
        running.set_function(lambda: sum(i.engine.running for i in provider.loaded().values()))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
