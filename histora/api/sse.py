"""Server-sent events framing for streamed chat replies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies must not buffer the stream
}


def sse_event(event: str, data: BaseModel | dict[str, Any]) -> bytes:
    payload = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n".encode()


def sse_response(events: AsyncIterator[bytes], status_code: int = 200) -> StreamingResponse:
    return StreamingResponse(
        events, status_code=status_code, media_type="text/event-stream", headers=SSE_HEADERS
    )
