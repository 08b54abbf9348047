"""Refuse request bodies larger than the upload cap before anything buffers them.

Starlette's multipart parser spools any size to disk, so the cap is enforced here:
at once from Content-Length, and while streaming for chunked bodies.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from histora.models.documents import MAX_FILES_PER_UPLOAD

# Room for the multipart envelope and small form fields around the file itself.
ENVELOPE_BYTES = 64 * 1024
# Reflex's upload route carries a whole drop of files; each file is still held to the
# cap by the service that reads it.
REFLEX_UPLOAD_PATH = "/_upload"


class BodyTooLargeError(Exception):
    pass


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_file_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_file_bytes + ENVELOPE_BYTES
        self.max_file_bytes = max_file_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if scope.get("path", "").startswith(REFLEX_UPLOAD_PATH):
            limit = MAX_FILES_PER_UPLOAD * self.max_file_bytes + ENVELOPE_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError
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
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        megabytes = self.max_file_bytes / (1024 * 1024)
        body = json.dumps(
            {
                "error": {
                    "code": "file_too_large",
                    "message": (
                        f"The request is too large; files are limited to {megabytes:.0f} MB."
                    ),
                    "request_id": None,
                }
            }
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


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
