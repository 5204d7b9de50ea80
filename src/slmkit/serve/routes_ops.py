"""Operations: health, Prometheus metrics, and the chat page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from slmkit.serve.state import ServerState, server

router = APIRouter()
State = Annotated[ServerState, Depends(server)]
STATIC = Path(__file__).with_name("static")
PAGE = STATIC / "page.html"
# Scripts only from this server (the page's own and the vendored libraries), no inline script,
# no request leaves for another host: a script in a model's output could not run or phone out
# even if it got past DOMPurify.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@router.get("/health")
async def health(s: State) -> dict[str, Any]:
    return {"status": "ok", "loaded": sorted(s.provider.loaded())}


@router.get("/metrics")
async def metrics(s: State) -> Response:
    body, ctype = s.metrics.render()
    return Response(body, media_type=ctype)


@router.get("/", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    headers = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(PAGE.read_text(), headers=headers)
