"""The scripted model server the benchmarks use: distinct replies in turn."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from histora.testing import fake_openai_server
from histora.testing.fake_openai_server import (
    FakeOpenAIServer,
    ModelScript,
    main,
    passages,
    split_tokens,
)


def test_passages_are_consecutive_and_exactly_as_long_as_asked() -> None:
    text = "one two  three\nfour five six seven"

    cut = passages(text, 3)

    assert cut == ("one two three", "four five six")
    assert all(len(split_tokens(passage)) == 3 for passage in cut)
    assert passages("too short", 3) == ()


def test_passages_can_start_further_into_the_text() -> None:
    text = "one two three four five six seven"
    assert passages(text, 2, skip=3) == ("four five", "six seven")
    assert passages(text, 2, skip=7) == ()


async def test_each_request_gets_the_next_reply_in_turn() -> None:
    server = FakeOpenAIServer({"m": ModelScript(reply="unused", replies=("first", "second"))})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with server.serve(), httpx.AsyncClient(base_url=server.base_url) as client:
        answers = [
            (await client.post("/chat/completions", json=body)).json()["choices"][0]["message"]
            for _ in range(3)
        ]

    assert [answer["content"] for answer in answers] == ["first", "second", "first"]


def test_a_reply_text_too_short_for_one_reply_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "short.txt"
    source.write_text("only four words here", encoding="utf-8")

    def serve_instead(*args: object) -> None:
        raise AssertionError("the server started")  # instead of serving until interrupted

    monkeypatch.setattr(fake_openai_server.asyncio, "run", serve_instead)
    with pytest.raises(SystemExit) as exited:
        main(["--reply-text", str(source), "--reply-tokens", "5"])

    assert exited.value.code == 2
    assert "fewer than 5 words" in capsys.readouterr().err
