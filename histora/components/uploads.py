"""The document drop zone, what it reports per file, and the reader for what it sends.

Files arrive as a stream of chunks (``rx.upload_files_chunk``) in a background
event, so a page State can read each file into memory and hand its bytes to the
documents service outside the state lock. Nothing is written to Reflex's public
upload folder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import reflex as rx
from pydantic import BaseModel
from reflex.vars import ArrayVar, ObjectVar

from histora.models.documents import MAX_FILES_PER_UPLOAD

MAX_FILES_PER_DROP = MAX_FILES_PER_UPLOAD
ACCEPTED_TYPES = {
    "application/pdf": [".pdf"],
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": [".docx"],
    "text/plain": [".txt"],
    "text/markdown": [".md", ".markdown"],
}
UNSUPPORTED_TYPE = "Only PDF, DOCX, TXT and Markdown files can be added."
TOO_MANY_FILES = f"Add at most {MAX_FILES_PER_DROP} files at a time."


class UploadOutcome(BaseModel):
    """What became of one dropped file, in words for the person who dropped it."""

    filename: str
    ok: bool
    message: str


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def too_large_message(max_bytes: int) -> str:
    return f"This file is larger than the {megabytes(max_bytes)} limit."


@dataclass(frozen=True)
class ReceivedFile:
    filename: str
    data: bytes
    too_large: bool


async def receive_files(
    chunks: AsyncIterator[Any], *, max_bytes: int
) -> AsyncIterator[ReceivedFile]:
    """Whole files, in order, holding one file in memory at a time.

    A file over ``max_bytes`` is drained (the stream must be consumed to its end)
    and reported as too large, without keeping its bytes.
    """
    name: str | None = None
    buffer = bytearray()
    too_large = False
    async for chunk in chunks:
        if chunk.offset == 0:  # the first chunk of the next file
            if name is not None:
                yield ReceivedFile(name, bytes(buffer), too_large)
            name, buffer, too_large = chunk.filename, bytearray(), False
        if too_large:
            continue
        if len(buffer) + len(chunk.data) > max_bytes:
            buffer, too_large = bytearray(), True
            continue
        buffer += chunk.data
    if name is not None:
        yield ReceivedFile(name, bytes(buffer), too_large)


def rejected_outcomes(rejected: list[dict[str, Any]], *, max_bytes: int) -> list[UploadOutcome]:
    """Plain words for the files the drop zone refused before sending anything.

    Each item is ``{"name": ..., "codes": [...]}`` as :func:`drop_zone` sends it.
    """
    messages = {
        "file-too-large": too_large_message(max_bytes),
        "file-invalid-type": UNSUPPORTED_TYPE,
        "too-many-files": TOO_MANY_FILES,
    }
    outcomes = []
    for item in rejected[:50]:
        entry = item if isinstance(item, dict) else {}
        name = str(entry.get("name") or "file")[:255]
        raw_codes = entry.get("codes")
        codes = raw_codes if isinstance(raw_codes, list) else []
        reason = next(
            (messages[c] for c in codes if isinstance(c, str) and c in messages),
            "This file was not accepted.",
        )
        outcomes.append(UploadOutcome(filename=name, ok=False, message=reason))
    return outcomes


def _summarized(rejected: rx.Var[Any]) -> rx.Var[Any]:
    """Only what the server needs of each refused file: its name and the reasons' codes."""
    return (
        rejected.to(ArrayVar, list[dict[str, Any]])
        .map(
            lambda item: {
                "name": item.to(ObjectVar, dict[str, Any])["file"].to(ObjectVar, dict[str, Any])[
                    "name"
                ],
                "codes": item.to(ObjectVar, dict[str, Any])["errors"]
                .to(ArrayVar, list[dict[str, Any]])
                .map(lambda error: error.to(ObjectVar, dict[str, Any])["code"]),
            }
        )
        .to(list[dict[str, Any]])
    )


def drop_zone(
    *,
    upload_id: str,
    on_drop: rx.event.EventSpec,
    on_drop_rejected: rx.EventHandler,
    max_bytes: rx.Var[int],
    busy: rx.Var[bool],
    label: str,
    compact: bool = False,
) -> rx.Component:
    hint = rx.text(
        "PDF, DOCX, TXT or Markdown · up to ",
        rx.Var.create(f"{max_bytes / (1024 * 1024):.0f}"),
        " MB each, ",
        MAX_FILES_PER_DROP,
        " at a time",
        size="1",
        color=rx.color("gray", 10),
    )
    return rx.upload.root(
        rx.vstack(
            rx.cond(
                busy,
                rx.hstack(rx.spinner(size="1"), rx.text("Checking…", size="2"), align="center"),
                rx.hstack(
                    rx.icon("file-up", size=16 if compact else 20),
                    rx.text(label, size="2", weight="medium"),
                    align="center",
                ),
            ),
            hint,
            align="center",
            spacing="1",
            text_align="center",
            padding="var(--space-3)" if compact else "var(--space-5)",
            border=f"1px dashed {rx.color('gray', 8)}",
            border_radius="10px",
            width="100%",
            cursor="pointer",
            _hover={"background_color": rx.color("gray", 2)},
        ),
        id=upload_id,
        accept=ACCEPTED_TYPES,
        max_size=max_bytes,
        max_files=MAX_FILES_PER_DROP,
        multiple=True,
        disabled=busy,
        on_drop=on_drop,
        on_drop_rejected=lambda rejected: on_drop_rejected(_summarized(rejected)),
        width="100%",
        data_testid="upload-zone",
    )


def upload_outcomes(outcomes: rx.Var[list[UploadOutcome]]) -> rx.Component:
    def _one(outcome: rx.Var[UploadOutcome]) -> rx.Component:
        return rx.hstack(
            rx.cond(
                outcome.ok,
                rx.icon("circle-check", size=14, color=rx.color("green", 10), flex_shrink="0"),
                rx.icon("circle-alert", size=14, color=rx.color("red", 10), flex_shrink="0"),
            ),
            rx.text(
                rx.text.strong(outcome.filename),
                ": ",
                outcome.message,
                size="1",
                style={"word_break": "break-word"},
            ),
            align="start",
            spacing="2",
            width="100%",
            data_testid=rx.cond(outcome.ok, "upload-accepted", "upload-refused"),
        )

    return rx.vstack(rx.foreach(outcomes, _one), spacing="1", width="100%")
