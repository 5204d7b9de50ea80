"""OpenAI-compatible endpoints: models, chat and text completions, embeddings."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from slmkit.errors import InputError
from slmkit.serve import handlers
from slmkit.serve.responses import Shape, encode_embedding
from slmkit.serve.schemas import ChatRequest, CompletionRequest, EmbeddingRequest
from slmkit.serve.state import ServerState, off_loop, server
from slmkit.serve.streaming import collect, first_chunk, sse

router = APIRouter(prefix="/v1")
State = Annotated[ServerState, Depends(server)]


@router.get("/models")
async def models(s: State) -> dict[str, Any]:
    ids = await off_loop(s.provider.available)
    data = [{"id": i, "object": "model", "created": 0, "owned_by": "slmkit"} for i in ids]
    return {"object": "list", "data": data}


@router.post("/chat/completions", response_model=None)
async def chat(body: ChatRequest, s: State) -> dict[str, Any] | StreamingResponse:
    return await _generate(body, s)


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, s: State) -> dict[str, Any] | StreamingResponse:
    return await _generate(body, s)


async def _generate(
    body: ChatRequest | CompletionRequest, s: State
) -> dict[str, Any] | StreamingResponse:
    item, tokens, options = await off_loop(handlers.prepare, s.provider, s.settings, body)
    shape = Shape(body, len(tokens))
    streams = [s.hub.stream(item.engine, tokens, options, s.metrics) for _ in range(body.n)]
    if body.stream:
        first = [await first_chunk(st) for st in streams]  # 429 before the 200 is sent
        return StreamingResponse(sse(shape, first, streams), media_type="text/event-stream")
    results = await asyncio.gather(*[collect(st) for st in streams])
    return shape.response(list(results))


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, s: State) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not t.strip() for t in texts):
        raise InputError("input must be non-empty text")
    vecs = await off_loop(handlers.embed, s.provider, body.model, texts)
    data = [
        {"object": "embedding", "index": i, "embedding": encode_embedding(v, body.encoding_format)}
        for i, v in enumerate(vecs)
    ]
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    return {"object": "list", "model": body.model, "data": data, "usage": usage}
