"""The production server compresses the Reflex websocket (permessage-deflate).

Every state change reaches the page as JSON over this one websocket; compressed, a
streamed reply costs a fraction of its size (bench/chat_overhead.py). Granian, Reflex's
other production server, negotiates no compression, so this fails if the app is served
by it again.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.browser


def _event_socket(app_url: str) -> str:
    return f"ws://{urlsplit(app_url).netloc}/_event/?EIO=4&transport=websocket"


def test_the_event_websocket_is_compressed(app_url: str) -> None:
    with connect(_event_socket(app_url), origin=app_url, compression="deflate") as socket:
        assert socket.response is not None
        extensions = socket.response.headers.get("Sec-WebSocket-Extensions", "")
        # Engine.IO's open packet: the connection is the app's, not a bare handshake.
        opening = socket.recv(timeout=10)

    assert extensions.startswith("permessage-deflate"), extensions
    assert isinstance(opening, str) and opening.startswith('0{"sid"'), opening


def test_a_client_that_offers_no_compression_is_still_served(app_url: str) -> None:
    with connect(_event_socket(app_url), origin=app_url, compression=None) as socket:
        assert socket.response is not None
        assert "Sec-WebSocket-Extensions" not in socket.response.headers
        assert str(socket.recv(timeout=10)).startswith('0{"sid"')
