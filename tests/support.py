"""Test helpers: server-sent events, ASGI apps on loopback ports, the Firebase emulator,
Reflex state trees."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, TypeVar, cast

import httpx
import pytest
import reflex as rx
import uvicorn
from reflex_base.event.context import EventContext
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp

from histora.models import User
from histora.models.users import UserPublic
from histora.services import tokens
from histora.settings import Settings
from histora.state.session import SessionState

StateT = TypeVar("StateT", bound=rx.State)

EMULATOR_VARIABLE = "FIREBASE_AUTH_EMULATOR_HOST"
# Every test that talks to the emulator uses the project scripts/test.sh starts it for.
EMULATOR_PROJECT = "demo-histora"


def emulator_google_id_token(host: str, *, email: str, name: str, google_sub: str) -> str:
    """A Firebase ID token for a Google account, issued by the Auth emulator.

    The emulator takes an unsigned JSON stand-in for Google's own ID token, the step a
    browser performs in Google's sign-in window.
    """
    google_claims = {"sub": google_sub, "email": email, "email_verified": True, "name": name}
    response = httpx.post(
        f"http://{host}/identitytoolkit.googleapis.com/v1/accounts:signInWithIdp",
        params={"key": "demo-web-api-key"},
        json={
            "postBody": urllib.parse.urlencode(
                {"id_token": json.dumps(google_claims), "providerId": "google.com"}
            ),
            "requestUri": "http://127.0.0.1",
            "returnSecureToken": True,
        },
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["idToken"])


def parse_sse(body: str) -> list[tuple[str, Any]]:
    """Frames as (event, decoded data), checking the framing is well formed."""
    events: list[tuple[str, Any]] = []
    assert body.endswith("\n\n"), "every frame ends with a blank line"
    for frame in body.strip("\n").split("\n\n"):
        lines = frame.split("\n")
        assert len(lines) == 2, f"unexpected frame: {frame!r}"
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        events.append((lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])))
    return events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_app(app: ASGIApp) -> AsyncIterator[str]:
    """Run the app with uvicorn in this event loop (so it shares the test's database)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def reflex_root() -> rx.State:
    """A fresh Reflex state tree, as one browser tab has, with nobody signed in."""
    return rx.State(_reflex_internal_init=True)  # type: ignore[call-arg]


def chat_page_router_data(as_path: str, query: dict[str, str]) -> dict[str, Any]:
    """An event's routing data on a chat page, as Reflex's backend completes what the
    browser sends (``query``: the address's own parameters)."""
    return {
        "pathname": "/chat/[character_id]",
        "asPath": as_path,
        "query": {**query, "character_id": as_path.split("?")[0].rstrip("/").rsplit("/")[-1]},
        "headers": {"origin": "http://127.0.0.1:3000", "user-agent": "test"},
        "token": "token",
        "ip": "127.0.0.1",
        "sid": "sid",
    }


def on_page(root: rx.State, router_data: dict[str, Any]) -> None:
    """``root`` as Reflex leaves it after an event from that page: its router vars set,
    nothing left to send."""
    root.router_data = root._update_router_vars(router_data, {})
    root.get_delta()
    root._clean()


def event_context(router_data: dict[str, Any]) -> EventContext:
    """The context Reflex runs an event handler in, as far as routing goes (a copy of
    ``router_data``, which handlers may change for the events they lead to)."""
    return EventContext(
        token=str(router_data.get("token", "token")),
        state_manager=None,  # type: ignore[arg-type]
        enqueue_impl=None,  # type: ignore[arg-type]
        router_data=dict(router_data),
    )


def substate(root: rx.State, state: type[StateT]) -> StateT:
    """The instance of ``state`` in the tree under ``root``."""
    return cast(StateT, root.get_substate(state.get_full_name().split(".")[1:]))


async def signed_in_root(db: AsyncSession, user: User | None, settings: Settings) -> rx.State:
    """A state tree signed in as ``user``, as a sign-in leaves it (None: anonymous)."""
    root = reflex_root()
    if user is not None:
        pair = await tokens.issue_token_pair(db, user=user, settings=settings)
        session = substate(root, SessionState)
        session._access_token, session.refresh_token = pair.access_token, pair.refresh_token
        session.user = UserPublic.model_validate(user, from_attributes=True)
    return root


def run_in_node(script: str) -> Any:
    """Run ``script`` in Node and return the JSON it prints: how a page's browser-side
    code is checked without a browser."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the page's browser-side code")
    result = subprocess.run(
        [node, "-"], input=script, capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(result.stdout)
