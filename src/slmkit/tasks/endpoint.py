"""A model behind any OpenAI-compatible chat endpoint (another `slm serve`, llama-server,
vLLM, a hosted API), used as the larger model of a benchmark or a cascade.

`URL` or `URL#MODEL`: the base URL up to `/v1`, and the model name to send (default: the
first one `/v1/models` lists). The key, if any, comes from `SLMKIT_ENDPOINT_API_KEY` or
`OPENAI_API_KEY`. An endpoint that does not answer within `timeout` seconds raises
UnavailableError naming the URL and the limit.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slmkit.errors import InputError, UnavailableError
from slmkit.runtime.base import GenerationStats
from slmkit.tasks.classify import Prediction, check_labels, classify_body
from slmkit.tasks.summarize import Summarizer


def is_endpoint(name: str) -> bool:
    return name.startswith(("http://", "https://"))


@dataclass
class Endpoint:
    base_url: str
    model: str | None = None
    timeout: float = 60.0

    @classmethod
    def parse(cls, spec: str, *, timeout: float = 60.0) -> Endpoint:
        if not is_endpoint(spec):
            raise InputError(f"{spec!r} is not an endpoint URL (http://HOST:PORT/v1[#MODEL])")
        url, _, model = spec.partition("#")
        url = url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        return cls(url, model or None, timeout)

    @property
    def name(self) -> str:
        return f"{self.base_url}#{self.model}" if self.model else self.base_url

    def _client(self) -> Any:
        import httpx

        key = os.environ.get("SLMKIT_ENDPOINT_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout)

    def _call(self, fn: Any) -> Any:
        import httpx

        try:
            with self._client() as client:
                return fn(client)
        except httpx.TimeoutException as exc:
            raise UnavailableError(
                f"endpoint {self.base_url} did not answer within {self.timeout:g} s"
            ) from exc
        except httpx.HTTPStatusError as exc:
            raise UnavailableError(
                f"endpoint {self.base_url} answered {exc.response.status_code}: "
                f"{exc.response.text[:200]}"
            ) from exc
        except httpx.TransportError as exc:
            raise UnavailableError(f"endpoint {self.base_url} unreachable: {exc}") from exc

    def model_name(self) -> str:
        if self.model is None:

            def first(client: Any) -> str:
                r = client.get("/models")
                r.raise_for_status()
                return str(r.json()["data"][0]["id"])

            self.model = self._call(first)
        return self.model

    def chat(self, prompt: str, max_tokens: int) -> str:
        body = self._body(prompt, max_tokens, stream=False)

        def send(client: Any) -> str:
            r = client.post("/chat/completions", json=body)
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"] or "")

        result: str = self._call(send)
        return result

    def _body(self, prompt: str, max_tokens: int, *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model_name(),
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": stream,
        }

    def timed_chat(self, prompt: str, max_tokens: int) -> GenerationStats:
        """Stream one reply: time to first content chunk, and chunks/s after it (servers
        send one chunk per token, so this is decode tokens/s as a client sees it)."""
        body = self._body(prompt, max_tokens, stream=True)

        def send(client: Any) -> GenerationStats:
            t0 = time.perf_counter()
            first = last = 0.0
            n = 0
            with client.stream("POST", "/chat/completions", json=body) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"][0].get("delta", {})
                    if delta.get("content"):
                        last = time.perf_counter() - t0
                        first = first or last
                        n += 1
            return GenerationStats(
                completion_tokens=n, ttft_s=first, decode_s=last - first, total_s=last
            )

        stats: GenerationStats = self._call(send)
        return stats


class EndpointClassifier:
    """Zero-shot classification by asking the endpoint for a label word (the same question
    the local zero-shot classifier scores); the answer gets probability 1."""

    def __init__(self, endpoint: Endpoint, labels: Sequence[str], instruction: str) -> None:
        self.endpoint = endpoint
        self.labels = check_labels(labels)
        self.instruction = instruction

    def _label(self, answer: str) -> str:
        low = answer.strip().lower()
        hits = [lb for lb in self.labels if low.startswith(lb.lower())]
        hits = hits or [lb for lb in self.labels if lb.lower() in low]
        return max(hits, key=len) if hits else self.labels[0]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for text in texts:
            answer = self.endpoint.chat(classify_body(self.instruction, self.labels, text), 8)
            label = self._label(answer)
            out.append(Prediction(label, {lb: float(lb == label) for lb in self.labels}))
        return out


def endpoint_summary(endpoint: Endpoint, document: str, max_words: int) -> str:
    """One-pass summary with the local summarizer's prompt (the endpoint's context is its own)."""
    return endpoint.chat(Summarizer.prompt(document, max_words), 4 * max_words).strip()
