"""Task endpoints beyond OpenAI's API: classification, summarization, redaction."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from slmkit.errors import InputError
from slmkit.serve import handlers
from slmkit.serve.schemas import ClassifyRequest, RedactRequest, SummarizeRequest
from slmkit.serve.state import ServerState, off_loop, server

router = APIRouter(prefix="/v1")
State = Annotated[ServerState, Depends(server)]
MAX_CLASSIFY_TEXTS = 256


@router.post("/classify")
async def classify(body: ClassifyRequest, s: State) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_CLASSIFY_TEXTS:
        raise InputError(f"input must hold 1 to {MAX_CLASSIFY_TEXTS} texts")
    preds = await off_loop(handlers.classify, s.provider, s.settings, body, texts)
    data = [
        {"object": "classification", "index": i, "label": p.label, "scores": p.probs}
        for i, p in enumerate(preds)
    ]
    return {"object": "list", "model": body.model, "data": data}


@router.post("/summarize")
async def summarize(body: SummarizeRequest, s: State) -> dict[str, Any]:
    res = await off_loop(handlers.summarize, s.provider, s.settings, body)
    return {
        "object": "summary",
        "model": body.model,
        "summary": res.summary,
        "document_tokens": res.document_tokens,
        "tokens_read": res.tokens_read,
        "chunks": res.chunks,
        "levels": res.levels,
        "coverage": res.coverage,
    }


@router.post("/redact")
async def redact(body: RedactRequest, s: State) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_CLASSIFY_TEXTS:
        raise InputError(f"input must hold 1 to {MAX_CLASSIFY_TEXTS} texts")
    done = await off_loop(handlers.redact, s.provider, body, texts)
    data = [
        {
            "object": "redaction",
            "index": i,
            "text": r.text,
            "entities": [{"kind": x.kind, "start": x.start, "end": x.end} for x in r.spans],
        }
        for i, r in enumerate(done)
    ]
    return {"object": "list", "data": data}
