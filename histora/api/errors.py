"""The one table mapping domain errors to HTTP responses, and the JSON error body."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from histora.errors import (
    ConflictError,
    FileTooLargeError,
    ForbiddenError,
    HistoraError,
    InvalidInputError,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    UnauthorizedError,
    UnsupportedFileError,
)

log = structlog.get_logger(__name__)

STATUS_BY_ERROR: dict[type[HistoraError], int] = {
    NotFoundError: 404,
    ForbiddenError: 403,
    UnauthorizedError: 401,
    QuotaExceededError: 402,
    RateLimitedError: 429,
    InvalidInputError: 422,
    FileTooLargeError: 413,
    UnsupportedFileError: 415,
    ConflictError: 409,
    ProviderError: 503,
}


def status_for(error: HistoraError) -> int:
    for error_type in type(error).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type]
    return 500


def error_body(request: Request, *, code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    if details is not None:
        body["details"] = details
    return {"error": body}


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HistoraError)
    status = status_for(exc)
    headers = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        log.error("request.failed", code=exc.code, detail=str(exc))
    return JSONResponse(
        error_body(request, code=exc.code, message=exc.public_message),
        status_code=status,
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"location": list(error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    return JSONResponse(
        error_body(
            request, code="invalid_input", message="The request is not valid.", details=details
        ),
        status_code=422,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(
        error_body(request, code=code, message=str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.unhandled", error_type=type(exc).__name__)
    return JSONResponse(
        error_body(request, code="internal_error", message="Something went wrong on our side."),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HistoraError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
