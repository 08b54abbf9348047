"""Refuse request bodies larger than their cap before anything buffers them.

Starlette's multipart parser spools any size to disk, so the upload cap is enforced
here, at once from Content-Length and while streaming for chunked bodies. A body for
any other route (JSON) is read whole into memory before it is validated, so it has a
small cap of its own: no JSON request of this API comes near it.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from histora.models.documents import MAX_FILES_PER_UPLOAD

# Room for the multipart envelope and small form fields around the file itself.
ENVELOPE_BYTES = 64 * 1024
# Reflex's upload route carries a whole drop of files; each file is still held to the
# cap by the service that reads it.
REFLEX_UPLOAD_PATH = "/_upload"
# For the routes that take no files.
MAX_OTHER_BODY_BYTES = 1024 * 1024


class BodyTooLargeError(StarletteHTTPException):
    """A body that streamed in past its cap. An HTTP error, because FastAPI passes those
    through from reading a body (any other error there becomes a 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(413, message)
        self.code = code


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_file_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_file_bytes + ENVELOPE_BYTES
        self.max_file_bytes = max_file_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = _is_upload_route(str(scope.get("path", "")))
        limit = self.max_bytes if upload else MAX_OTHER_BODY_BYTES
        if scope.get("path", "").startswith(REFLEX_UPLOAD_PATH):
            limit = MAX_FILES_PER_UPLOAD * self.max_file_bytes + ENVELOPE_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, upload=upload)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(*self._too_large(upload))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await self._refuse(scope, send, upload=upload)

    def _too_large(self, upload: bool) -> tuple[str, str]:
        """The error's code and message."""
        if upload:
            megabytes = self.max_file_bytes / (1024 * 1024)
            return "file_too_large", (
                f"The request is too large; files are limited to {megabytes:.0f} MB."
            )
        return "request_too_large", (
            f"The request body is too large; the limit is {MAX_OTHER_BODY_BYTES // 1024} KB "
            "(files go to the upload routes, as multipart/form-data)."
        )

    async def _refuse(self, scope: Scope, send: Send, *, upload: bool) -> None:
        code, message = self._too_large(upload)
        # Set by RequestContextMiddleware, which runs before this one.
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps(
            {"error": {"code": code, "message": message, "request_id": request_id}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _is_upload_route(path: str) -> bool:
    """The routes that take files (by route, not by the content type a client says)."""
    return path.startswith(REFLEX_UPLOAD_PATH) or (
        path.startswith("/api/") and path.rstrip("/").endswith("/documents")
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
