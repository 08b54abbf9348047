"""The floor for the REST chat route: the same hops, none of Histora's work.

A bare FastAPI app with the chat send route's shape, started by
``chat_overhead.py`` under uvicorn beside Histora's API. It streams the reply
through Histora's own model client and SSE framing, but has no middleware, no
authentication, no database and no prompt: whatever it adds over the direct stream
is what any Python service in between costs (a second HTTP hop, FastAPI, the model
client), so Histora's added time minus this one is Histora's own work.

    uvicorn --factory passthrough_api:create_app   (env: BENCH_MODEL_URL, BENCH_MODEL)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from histora.api.sse import sse_event, sse_response
from histora.providers.chat_models import OpenAICompatibleChatModel
from histora.providers.chat_types import ModelSpec, PromptMessage, StreamDelta

SEND_PATH = "/api/v1/chat/sessions/{session_id}/messages"


class Send(BaseModel):
    content: str
    stream: bool = True


def create_app() -> FastAPI:
    model = OpenAICompatibleChatModel(
        provider_name="passthrough",
        base_url=os.environ["BENCH_MODEL_URL"],
        api_key="bench",
        # A limit no bench reply reaches (Histora's own is its settings' 700), so the
        # fake server never cuts the passthrough's replies short.
        models=[ModelSpec(name=os.environ["BENCH_MODEL"], max_tokens=100_000)],
        timeout_seconds=60,
    )
    app = FastAPI()

    async def events(content: str) -> AsyncIterator[bytes]:
        # The same first event as Histora's route, so the client reads alike.
        yield sse_event("message", {"role": "user", "content": content})
        async for event in model.stream([PromptMessage(role="user", content=content)]):
            if isinstance(event, StreamDelta):
                yield sse_event("delta", {"text": event.text})
        yield sse_event("done", {"status": "complete"})

    @app.post(SEND_PATH)
    async def send(session_id: str, body: Send) -> StreamingResponse:
        return sse_response(events(body.content))

    return app
