"""Errors to HTTP, by exception class, in OpenAI's error shape.

Client errors (`InputError` and its kinds) are 4xx; server-side failures (`ServerError`)
are 5xx, and the temporary ones (`UnavailableError`) carry Retry-After. The first row
whose class matches wins, so specific kinds come before their bases.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slmkit.errors import (
    ContextOverflowError,
    EngineFullError,
    InputError,
    ModelNotFoundError,
    ModelNotInstalledError,
    OverBudgetError,
    RequestTooLargeError,
    SchemaError,
    ServerError,
    SlmkitError,
    UnavailableError,
)

log = logging.getLogger("slmkit.serve")

# (class, status, OpenAI error type, code)
STATUS: tuple[tuple[type[BaseException], int, str, str | None], ...] = (
    (EngineFullError, 429, "rate_limit_error", "queue_full"),
    (OverBudgetError, 503, "server_error", "over_memory_budget"),
    (UnavailableError, 503, "server_error", "unavailable"),
    (ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
    (ModelNotInstalledError, 404, "invalid_request_error", "model_not_found"),
    (ContextOverflowError, 400, "invalid_request_error", "context_length_exceeded"),
    (RequestTooLargeError, 413, "invalid_request_error", "request_too_large"),
    # OpenAI answers 400 for an unusable json_schema, and clients expect that.
    (SchemaError, 400, "invalid_request_error", "invalid_schema"),
    (InputError, 400, "invalid_request_error", None),
    (ServerError, 500, "server_error", None),
)


def error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def classify_error(e: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for an exception. Anything unexpected is a 500 whose
    message hides the internals (the traceback goes to the log)."""
    for cls, status, type_, code in STATUS:
        if isinstance(e, cls):
            headers = {}
            if isinstance(e, UnavailableError):
                headers["Retry-After"] = str(max(1, round(e.retry_after)))
            return status, error_body(str(e), type_, code), headers
    log.error("unexpected error", exc_info=e)
    return 500, error_body("internal error", "server_error"), {}


def sse_error(message: str) -> str:
    """An error reported inside an event stream (its 200 status line is already sent)."""
    return f"data: {json.dumps(error_body(message, 'server_error'))}\n\n"


def install(app: Any) -> None:
    """Register the handlers: slmkit errors by class, framework errors in the same shape."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def by_class(request: Request, e: Exception) -> JSONResponse:
        status, body, headers = classify_error(e)
        return JSONResponse(body, status, headers=headers)

    async def http(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, HTTPException)
        kind = "invalid_request_error" if e.status_code < 500 else "server_error"
        return JSONResponse(error_body(str(e.detail), kind), e.status_code)

    async def invalid(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        first = e.errors()[0] if e.errors() else {"msg": "invalid request", "loc": ()}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        msg = f"{where}: {first['msg']}" if where else str(first["msg"])
        return JSONResponse(error_body(msg, "invalid_request_error"), 400)

    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(SlmkitError, by_class)
    app.add_exception_handler(Exception, by_class)  # Starlette's last resort: a logged 500
