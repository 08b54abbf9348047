"""Shared API schemas: the error envelope, and the base of request bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = None
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RequestBody(BaseModel):
    """A JSON request body. A field the API does not know is refused, not ignored:
    "clientMessageId" for client_message_id would otherwise turn idempotency off
    without a word. And a boolean is a JSON boolean, not "yes" or 1."""

    model_config = ConfigDict(extra="forbid", strict=True)
