"""How the document pages read dropped files and word the drop zone's refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from reflex import UploadChunk

from histora.components.uploads import (
    TOO_MANY_FILES,
    UNSUPPORTED_TYPE,
    receive_files,
    rejected_outcomes,
)
from histora.pages.admin.knowledge_base_state import route_character_id


async def _chunks(*parts: tuple[str, bytes, int]) -> AsyncIterator[UploadChunk]:
    for filename, data, offset in parts:
        yield UploadChunk(filename=filename, offset=offset, content_type="", data=data)


async def test_receive_files_groups_chunks_into_whole_files() -> None:
    chunks = _chunks(
        ("a.txt", b"hello ", 0),
        ("a.txt", b"world", 6),
        ("a.txt", b"again", 0),  # a second file under the same name
        ("empty.md", b"", 0),
    )
    files = [f async for f in receive_files(chunks, max_bytes=100)]
    assert [(f.filename, f.data, f.too_large) for f in files] == [
        ("a.txt", b"hello world", False),
        ("a.txt", b"again", False),
        ("empty.md", b"", False),
    ]


async def test_receive_files_drains_a_file_over_the_cap_without_keeping_it() -> None:
    chunks = _chunks(("big.pdf", b"x" * 8, 0), ("big.pdf", b"x" * 8, 8), ("small.txt", b"ok", 0))
    files = [f async for f in receive_files(chunks, max_bytes=10)]
    assert [(f.filename, f.data, f.too_large) for f in files] == [
        ("big.pdf", b"", True),
        ("small.txt", b"ok", False),
    ]


async def test_receive_files_of_nothing_is_nothing() -> None:
    assert [f async for f in receive_files(_chunks(), max_bytes=10)] == []


def test_rejections_are_worded_for_people() -> None:
    rejected = [
        {"name": "huge.pdf", "codes": ["file-too-large"]},
        {"name": "photo.png", "codes": ["file-invalid-type"]},
        {"name": "sixth.txt", "codes": ["too-many-files"]},
        {"name": "odd.txt", "codes": ["something-new", ["nested"]]},
        {"codes": "not a list"},
        "not even a dict",
    ]
    outcomes = rejected_outcomes(rejected, max_bytes=20 * 1024 * 1024)  # type: ignore[arg-type]
    assert [(o.filename, o.ok) for o in outcomes] == [
        ("huge.pdf", False),
        ("photo.png", False),
        ("sixth.txt", False),
        ("odd.txt", False),
        ("file", False),
        ("file", False),
    ]
    assert outcomes[0].message == "This file is larger than the 20 MB limit."
    assert outcomes[1].message == UNSUPPORTED_TYPE
    assert outcomes[2].message == TOO_MANY_FILES
    assert outcomes[3].message == "This file was not accepted."


def test_route_character_id_only_on_knowledge_base_pages() -> None:
    assert route_character_id("/admin/characters/marcus-aurelius") == "marcus-aurelius"
    assert route_character_id("/admin/characters/marcus-aurelius/") == "marcus-aurelius"
    assert route_character_id("/chat/marcus-aurelius") == ""
