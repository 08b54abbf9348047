"""The chat flows through the REST API against a real OpenAI-compatible HTTP endpoint
(a local fake server), with the production client and its fallback chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from histora.providers.chat_models import OpenAICompatibleChatModel
from histora.providers.chat_types import ModelSpec
from histora.testing.fake_openai_server import FakeOpenAIServer, ModelScript
from tests.conftest import FakeProvidersContainer
from tests.support import parse_sse

SESSIONS = "/api/v1/chat/sessions"


def _use_endpoint(
    container: FakeProvidersContainer, server: FakeOpenAIServer, models: list[ModelSpec]
) -> None:
    """The app's chat model: the production client, on ``server``, with ``models``."""
    container.__dict__["chat_model"] = OpenAICompatibleChatModel(
        provider_name="openai-compatible",
        base_url=server.base_url,
        api_key="test-key",
        models=models,
        timeout_seconds=10,
    )


@pytest.fixture
async def endpoint(container: FakeProvidersContainer) -> AsyncIterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    server.register("primary/broken", ModelScript(status_code=503))
    server.register("backup/works", ModelScript(reply="Know thyself, my friend."))
    async with server.serve() as running:
        _use_endpoint(
            container, running, [ModelSpec(name="primary/broken"), ModelSpec(name="backup/works")]
        )
        yield running


async def test_reply_falls_back_to_the_next_model_before_the_first_token(
    client: httpx.AsyncClient, endpoint: FakeOpenAIServer
) -> None:
    session_id = (await client.post(SESSIONS, json={"character_id": "socrates"})).json()["id"]
    response = await client.post(f"{SESSIONS}/{session_id}/messages", json={"content": "Advice?"})
    events = parse_sse(response.text)
    text = "".join(data["text"] for name, data in events if name == "delta")
    done = events[-1][1]
    assert text == "Know thyself, my friend."
    assert done["status"] == "complete" and done["model"] == "backup/works"
    assert endpoint.requests["primary/broken"] == 1 and endpoint.requests["backup/works"] == 1
    sent = endpoint.last_request["backup/works"]
    assert sent["messages"][0]["role"] == "system"
    assert "I am Socrates" in sent["messages"][0]["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "Advice?"}


async def test_provider_usage_is_recorded(
    client: httpx.AsyncClient, endpoint: FakeOpenAIServer
) -> None:
    session_id = (await client.post(SESSIONS, json={"character_id": "socrates"})).json()["id"]
    response = await client.post(
        f"{SESSIONS}/{session_id}/messages", json={"content": "Hi", "stream": False}
    )
    reply = response.json()["reply"]
    assert reply["completion_tokens"] > 0 and reply["prompt_tokens"] > 0


async def test_a_reply_the_model_cut_off_at_max_tokens_says_so(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    server = FakeOpenAIServer()
    server.register("small", ModelScript(reply="One two three four five six seven eight."))
    async with server.serve() as running:
        _use_endpoint(container, running, [ModelSpec(name="small", max_tokens=3)])
        session_id = (await client.post(SESSIONS, json={"character_id": "socrates"})).json()["id"]
        url = f"{SESSIONS}/{session_id}/messages"
        events = parse_sse((await client.post(url, json={"content": "Count?"})).text)
        assert events[-1][0] == "done"
        assert events[-1][1]["content"] == "One two three " and events[-1][1]["cut_short"]
        # Listed the same way afterwards; the question itself is never cut short.
        listed = (await client.get(url)).json()["items"]
        assert [(m["role"], m["cut_short"]) for m in listed] == [
            ("user", False),
            ("assistant", True),
        ]
        server.register("small", ModelScript(reply="Done."))
        reply = (await client.post(url, json={"content": "And?", "stream": False})).json()
        assert reply["reply"]["content"] == "Done." and not reply["reply"]["cut_short"]
