"""Chat completions grounded in a knowledge base (the request's `kb` field): the last user
message is the question; the knowledge base's best excerpts are numbered into the prompt
(tasks/ask.py's rules) and the answer streams like any chat. The response carries a `kb`
object: the excerpts shown, the citations the answer makes ([n] -> file, span, text), the
retrieval's best similarity, and whether it is a refusal. A streamed answer sends that
object as one more event (`"object": "chat.completion.kb"`) before `data: [DONE]`. When
retrieval finds nothing close enough, the refusal is the whole answer and no model runs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from slmkit.errors import InputError
from slmkit.serve.schemas import ChatRequest
from slmkit.serve.state import ServerState, off_loop
from slmkit.tasks.ask import (
    MIN_SIMILARITY,
    NOT_FOUND,
    SYSTEM,
    Scorer,
    answer_messages,
    citations,
    is_refusal,
    retrieve,
)
from slmkit.tasks.kb import Hit

Generate = Callable[[ChatRequest, ServerState], Awaitable[dict[str, Any] | StreamingResponse]]


def ground(s: ServerState, body: ChatRequest) -> tuple[ChatRequest, list[Hit], float]:
    """The request with the excerpts in it, the excerpts, and the best similarity."""
    if body.messages[-1].role != "user":
        raise InputError("with kb, the last message must be the user's question")
    kb = s.knowledge_base(str(body.kb))
    question = body.messages[-1].content
    hits, confidence = retrieve(
        question, kb, body.kb_k, MIN_SIMILARITY, _scorer(s, body), body.kb_widen
    )
    earlier = [m.model_dump() for m in body.messages[:-1] if m.role != "system"]
    grounded = answer_messages(question, hits)
    messages = [{"role": "system", "content": SYSTEM}, *earlier, grounded[1]]
    return body.model_copy(update={"messages": messages, "kb": None}), hits, confidence


def _scorer(s: ServerState, body: ChatRequest) -> Scorer | None:
    """With `kb_rerank`, the served model scores excerpts through its engine (shared with
    the other requests, like classification)."""
    if not body.kb_rerank:
        return None
    from slmkit.engine.batch import score_many

    loaded = s.provider.get(body.model)
    return lambda pairs: [
        ll.logprob for ll in score_many(loaded.model, pairs, engine=loaded.engine)
    ]


def payload(name: str, hits: list[Hit], confidence: float, text: str) -> dict[str, Any]:
    refused = not hits or is_refusal(text)
    return {
        "name": name,
        "refused": refused,
        "confidence": round(confidence, 4),
        "citations": [] if refused else [c.as_dict() for c in citations(text, hits)],
        "excerpts": [h.as_dict() for h in hits],
    }


async def chat(body: ChatRequest, s: ServerState, generate: Generate) -> Any:
    from slmkit.serve.schemas import Message

    grounded, hits, confidence = await off_loop(ground, s, body)
    name = str(body.kb)
    if not hits:
        return _refusal(body, name, confidence)
    validated = grounded.model_copy(
        update={"messages": [Message.model_validate(m) for m in grounded.messages]}
    )
    out = await generate(validated, s)
    if isinstance(out, StreamingResponse):
        tail = _with_kb(out.body_iterator, lambda text: payload(name, hits, confidence, text))
        return StreamingResponse(tail, media_type="text/event-stream")
    text = out["choices"][0]["message"]["content"]
    out["kb"] = payload(name, hits, confidence, text)
    return out


def _kb_event(kb: dict[str, Any]) -> str:
    return f"data: {json.dumps({'object': 'chat.completion.kb', 'kb': kb})}\n\n"


async def _with_kb(
    events: AsyncIterable[Any], make: Callable[[str], dict[str, Any]]
) -> AsyncIterator[str]:
    """The stream's events, with the kb event before `data: [DONE]`."""
    text: list[str] = []
    async for raw in events:
        event = raw.decode() if isinstance(raw, bytes) else str(raw)
        if event.startswith("data: [DONE]"):
            yield _kb_event(make("".join(text)))
        elif event.startswith("data: {"):
            choices = json.loads(event[6:]).get("choices") or [{}]
            text.append((choices[0].get("delta") or {}).get("content") or "")
        yield event


def _refusal(body: ChatRequest, name: str, confidence: float) -> Any:
    kb = payload(name, [], confidence, NOT_FOUND)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    head = {"id": rid, "created": created, "model": body.model}
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if not body.stream:
        message = {"role": "assistant", "content": NOT_FOUND}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return {**head, "object": "chat.completion", "choices": [choice], "usage": usage, "kb": kb}

    async def events() -> AsyncIterator[str]:
        delta = {"role": "assistant", "content": NOT_FOUND}
        choice = {"index": 0, "delta": delta, "finish_reason": "stop", "logprobs": None}
        chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
        yield f"data: {json.dumps(chunk)}\n\n"
        yield _kb_event(kb)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
