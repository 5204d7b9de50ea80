"""Operations: health, Prometheus metrics, and the chat page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from slmkit.serve.state import ServerState, server

router = APIRouter()
State = Annotated[ServerState, Depends(server)]
PAGE = Path(__file__).with_name("page.html")


@router.get("/health")
async def health(s: State) -> dict[str, Any]:
    return {"status": "ok", "loaded": sorted(s.provider.loaded())}


@router.get("/metrics")
async def metrics(s: State) -> Response:
    body, ctype = s.metrics.render()
    return Response(body, media_type=ctype)


@router.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE.read_text()
