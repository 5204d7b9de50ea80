"""OpenAI-compatible endpoints: models, chat and text completions, embeddings."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from slmkit.errors import InputError, InvalidOptionsError
from slmkit.serve import grounding, handlers
from slmkit.serve.responses import Part, Shape, encode_embedding
from slmkit.serve.schemas import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from slmkit.serve.state import ServerState, off_loop, server
from slmkit.serve.streaming import collect, first_chunk, sse

router = APIRouter(prefix="/v1")
tokenizer_router = APIRouter()  # vLLM's paths, at the root: lm-eval's remote tokenizer
State = Annotated[ServerState, Depends(server)]


@router.get("/models")
async def models(s: State) -> dict[str, Any]:
    ids = await off_loop(s.provider.available)
    data = [{"id": i, "object": "model", "created": 0, "owned_by": "slmkit"} for i in ids]
    return {"object": "list", "data": data}


@router.post("/chat/completions", response_model=None)
async def chat(body: ChatRequest, s: State) -> dict[str, Any] | StreamingResponse:
    if body.kb is not None:
        out: dict[str, Any] | StreamingResponse = await grounding.chat(body, s, _generate)
        return out
    return await _generate(body, s)


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, s: State) -> dict[str, Any] | StreamingResponse:
    prompts = body.prompts()
    if len(prompts) == 1 and not body.echo:
        return await _generate(body, s)
    if body.stream:
        raise InvalidOptionsError("stream is not supported with echo or several prompts")
    # Waves no bigger than the engine's sequences, so a batch of prompts never fills the
    # queue by itself (other clients' requests still get their turn between waves).
    parts = [await _complete(body, prompts[0], s)]
    item = await off_loop(s.provider.get, body.model)
    wave = max(1, item.engine.scheduler.n_seq // body.n)
    for start in range(1, len(prompts), wave):
        chunk = prompts[start : start + wave]
        parts.extend(await asyncio.gather(*[_complete(body, p, s) for p in chunk]))
    return Shape(body, sum(p.n_prompt for p in parts)).merged(parts)


async def _complete(body: CompletionRequest, prompt: str | list[int], s: State) -> Part:
    """One prompt's n generations, and its echo (text and scored tokens) if asked."""
    item, tokens, options = await off_loop(handlers.prepare, s.provider, s.settings, body, prompt)
    streams = [s.hub.stream(item.engine, tokens, options, s.metrics) for _ in range(body.n)]
    results = list(await asyncio.gather(*[collect(st) for st in streams]))
    part = Part(len(tokens), results)
    if body.echo:
        part.echo_text = (
            prompt if isinstance(prompt, str) else item.model.backend.detokenize(tokens)
        )
        if body.logprobs is not None:
            k = body.logprobs
            part.first, part.echo = await off_loop(handlers.echo_logprobs, item, tokens, k)
    return part


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


@tokenizer_router.get("/tokenizer_info")
async def tokenizer_info(s: State, model: str | None = None) -> dict[str, Any]:
    item = await off_loop(handlers.tokenizer_model, s.provider, model)
    bos, eos = item.model.backend.special_tokens()
    return {
        "model": item.model.id,
        "bos_token": bos or None,
        "eos_token": eos or None,
        "pad_token": None,
        "chat_template": item.model.backend.chat_template(),
        "max_model_len": min(item.engine.max_request, item.model.n_ctx),
    }


@tokenizer_router.post("/tokenize")
async def tokenize(body: TokenizeRequest, s: State) -> dict[str, Any]:
    item = await off_loop(handlers.tokenizer_model, s.provider, body.model)
    ids = item.model.backend.tokenize(body.prompt, add_special=body.add_special_tokens)
    return {"tokens": ids, "count": len(ids), "max_model_len": item.model.n_ctx}


@tokenizer_router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, s: State) -> dict[str, Any]:
    item = await off_loop(handlers.tokenizer_model, s.provider, body.model)
    ids = handlers.check_token_ids(body.tokens, item.engine.runner.n_vocab)
    return {"prompt": item.model.backend.detokenize(ids)}
