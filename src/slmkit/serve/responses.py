"""OpenAI's response shapes for chat and text completions: whole responses, stream events,
usage and logprobs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slmkit.runtime.base import Chunk, TokenLogprob
from slmkit.serve.schemas import ChatRequest, CompletionRequest

_FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


@dataclass
class Part:
    """One prompt of a completion: its generations and, with echo, its text and scores."""

    n_prompt: int
    results: list[list[Chunk]]
    echo_text: str = ""
    first: str = ""  # the first prompt token's text (it has no log-probability)
    echo: list[TokenLogprob] | None = None


@dataclass
class Shape:
    """Everything needed to shape one request's output."""

    body: ChatRequest | CompletionRequest
    n_prompt: int
    chat: bool = field(init=False)
    rid: str = field(init=False)
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.chat = isinstance(self.body, ChatRequest)
        self.rid = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.body.logprobs) if self.chat else self.body.logprobs is not None

    def _envelope(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": kind,
            "created": self.created,
            "model": self.body.model,
            "choices": choices,
        }

    def response(self, results: list[list[Chunk]]) -> dict[str, Any]:
        """The non-streaming response: one choice per generation."""
        choices = []
        for i, chunks in enumerate(results):
            text = "".join(c.text for c in chunks)
            lps = [lp for c in chunks for lp in c.logprobs]
            choice: dict[str, Any] = {
                "index": i,
                "finish_reason": _FINISH.get(chunks[-1].finish_reason or ""),
                "logprobs": self.logprobs(lps),
            }
            if self.chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choices.append(choice)
        out = self._envelope("chat.completion" if self.chat else "text_completion", choices)
        out["usage"] = usage(self.n_prompt, [r[-1] for r in results])
        return out

    def merged(self, parts: list[Part]) -> dict[str, Any]:
        """A completion of several prompts and/or with echo: choice p * n + j is prompt p's
        generation j, its text after the echoed prompt, its logprobs after the prompt's
        (the first prompt token has none: null, as OpenAI's legacy API gives)."""
        choices: list[dict[str, Any]] = []
        for part in parts:
            for chunks in part.results:
                lps = [lp for c in chunks for lp in c.logprobs]
                logprobs = self.logprobs(lps)
                if logprobs is not None and part.echo is not None:
                    logprobs = _prefixed(self.logprobs(part.echo) or {}, part.first, logprobs)
                choices.append(
                    {
                        "index": len(choices),
                        "text": part.echo_text + "".join(c.text for c in chunks),
                        "finish_reason": _FINISH.get(chunks[-1].finish_reason or ""),
                        "logprobs": logprobs,
                    }
                )
        out = self._envelope("text_completion", choices)
        out["usage"] = usage(self.n_prompt, [r[-1] for p in parts for r in p.results])
        return out

    def event(self, i: int, c: Chunk, role: bool = False) -> str:
        """One streamed chunk as an SSE line."""
        choice: dict[str, Any] = {"index": i}
        if self.chat:
            choice["delta"] = (
                {"role": "assistant", "content": c.text} if role else {"content": c.text}
            )
        else:
            choice["text"] = c.text
        choice["logprobs"] = self.logprobs(c.logprobs)
        choice["finish_reason"] = _FINISH.get(c.finish_reason or "")
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return f"data: {json.dumps(self._envelope(kind, [choice]))}\n\n"

    def usage_event(self, finals: list[Chunk]) -> str | None:
        """The usage event that ends a stream when `stream_options.include_usage` is set."""
        opts = self.body.stream_options
        if not (opts and opts.include_usage):
            return None
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        payload = self._envelope(kind, [])
        payload["usage"] = usage(self.n_prompt, finals)
        return f"data: {json.dumps(payload)}\n\n"

    def logprobs(self, lps: Sequence[TokenLogprob]) -> dict[str, Any] | None:
        """OpenAI's logprobs objects: chat `{"content": [...]}`, completions token arrays."""
        if not self.wants_logprobs:
            return None
        if self.chat:  # chat reports the generated text's tokens, not the end token
            return {"content": [_chat_logprob(t) for t in lps if not t.eog]}
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


def _prefixed(prompt: dict[str, Any], first: str, gen: dict[str, Any]) -> dict[str, Any]:
    """Prompt token arrays (led by the unscored first token) then the generated ones, with
    text offsets running on through both."""
    tokens = [first, *prompt["tokens"], *gen["tokens"]]
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": [None, *prompt["token_logprobs"], *gen["token_logprobs"]],
        "top_logprobs": [None, *prompt["top_logprobs"], *gen["top_logprobs"]],
        "text_offset": offsets,
    }


def _chat_logprob(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": list(t.token.encode()),
        "top_logprobs": [{"token": a, "logprob": b, "bytes": list(a.encode())} for a, b in t.top],
    }


def usage(prompt_tokens: int, finals: list[Chunk]) -> dict[str, int]:
    out = sum(c.stats.completion_tokens for c in finals if c.stats)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": out,
        "total_tokens": prompt_tokens + out,
    }


def encode_embedding(vec: Sequence[float], fmt: str) -> list[float] | str:
    """OpenAI's encodings: a float list, or base64 of little-endian float32."""
    import base64

    import numpy as np

    if fmt == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vec]
