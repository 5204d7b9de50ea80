"""Task endpoints beyond OpenAI's API: classification, summarization, redaction, and one
generated `POST /v1/tasks/NAME` for each registered task without a route of its own
(tasks/registry.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, create_model

from slmkit.errors import InputError
from slmkit.serve import handlers
from slmkit.serve.schemas import (
    KB_NAME,
    ClassifyRequest,
    KbQueryRequest,
    RedactRequest,
    SummarizeRequest,
)
from slmkit.serve.state import ServerState, off_loop, server
from slmkit.tasks import registry
from slmkit.tasks.registry import TaskSpec

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
    return {"object": "summary", "model": body.model, **res.as_dict()}


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


@router.get("/kb")
async def kb_list(s: State) -> dict[str, Any]:
    """The knowledge bases in the server's store (`slm kb list`), for pickers."""
    from slmkit.tasks.kb import list_kbs

    def run() -> list[dict[str, Any]]:
        keys = ("files", "chunks", "embedder", "updated")
        return [
            {"id": m["name"], "object": "kb", **{k: m.get(k) for k in keys}}
            for m in list_kbs(s.provider.store)
        ]

    return {"object": "list", "data": await off_loop(run)}


@router.post("/kb/{name}/query")
async def kb_query(
    name: Annotated[str, Path(pattern=KB_NAME)], body: KbQueryRequest, s: State
) -> dict[str, Any]:
    """Retrieval only: a knowledge base's best chunks for a query (vectors + BM25, fused)."""

    def run() -> list[dict[str, Any]]:
        return [h.as_dict() for h in s.knowledge_base(name).query(body.query, body.k)]

    data = await off_loop(run)
    return {"object": "list", "kb": name, "data": data}


def task_router() -> APIRouter:
    """The generated routes, for the tasks registered when the app is built."""
    r = APIRouter(prefix="/v1/tasks", tags=["tasks"])
    for spec in registry.all_tasks():
        if spec.route is None:
            _add_task_route(r, spec)
    return r


def _add_task_route(r: APIRouter, spec: TaskSpec) -> None:
    fields: dict[str, Any] = {
        k: (f.annotation, f) for k, f in spec.options.model_fields.items() if k != "model_id"
    }
    body_model: type[BaseModel] = create_model(
        f"{spec.name.title()}TaskRequest",
        __config__=ConfigDict(extra="forbid"),
        input=(str | list[str], Field(description="A text or up to 256 texts.")),
        model=(str | None, Field(None, description="The model (default: the task's own).")),
        **fields,
    )

    async def run(body: Any, s: State) -> dict[str, Any]:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_CLASSIFY_TEXTS:
            raise InputError(f"input must hold 1 to {MAX_CLASSIFY_TEXTS} texts")
        opts = body.model_dump(exclude={"input", "model"}, exclude_none=True)
        if body.model:
            opts["model_id"] = body.model
        fn = await off_loop(s.task_fn, spec.name, opts)
        rows = await off_loop(fn, texts)
        data = [{"object": spec.name, "index": i, **row} for i, row in enumerate(rows)]
        return {"object": "list", "task": spec.name, "model": body.model, "data": data}

    # the request model is built here, so the annotation is set as an object, not a string
    run.__annotations__ = {"body": body_model, "s": State, "return": dict[str, Any]}
    r.add_api_route(
        f"/{spec.name}",
        run,
        methods=["POST"],
        summary=spec.summary,
        description=f"Each result: {', '.join(f'{k} ({v})' for k, v in spec.output.items())}.",
        name=f"task_{spec.name}",
    )
