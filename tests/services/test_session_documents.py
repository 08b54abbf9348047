"""A conversation's own documents: its limit holds, also against uploads made at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, NotFoundError
from histora.models import User
from histora.models.chat import ChatSessionPublic
from histora.models.documents import Document
from histora.providers.fakes import FakeVectorStore
from histora.providers.file_store import LocalFileStore
from histora.services import conversations
from histora.services import documents as documents_service
from histora.services.extraction import ExtractionLimits
from histora.settings import Settings
from tests.factories import make_user

LIMIT = documents_service.MAX_DOCUMENTS_PER_SESSION


@dataclass(frozen=True)
class Uploads:
    files: LocalFileStore
    limits: ExtractionLimits

    async def add(self, db: AsyncSession, actor: User, session_id: uuid.UUID, n: int) -> None:
        await documents_service.upload_to_session(
            db,
            actor=actor,
            session_id=session_id,
            upload=documents_service.Upload(f"notes-{n}.txt", f"Note number {n}.\n".encode()),
            files=self.files,
            limits=self.limits,
        )

    def stored_files(self) -> int:
        return sum(1 for path in self.files.root.rglob("*") if path.is_file())


@pytest.fixture
def uploads(settings: Settings, tmp_path: Path) -> Uploads:
    # Not the container's: its database connection holds a transaction for the whole
    # test, which on SQLite would lock out the separate transactions below.
    return Uploads(LocalFileStore(tmp_path / "documents"), ExtractionLimits.from_settings(settings))


async def _new_conversation(db: AsyncSession) -> tuple[User, ChatSessionPublic]:
    user = await make_user(db)
    return user, await conversations.create_session(db, actor=user, character_id="socrates")


async def _count(db: AsyncSession, session_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(Document).where(Document.session_id == session_id)
    return (await db.exec(query)).one()


async def test_a_conversation_holds_its_limit_of_documents_and_no_more(
    db: AsyncSession, uploads: Uploads
) -> None:
    user, session = await _new_conversation(db)
    for n in range(LIMIT):
        await uploads.add(db, user, session.id, n)

    with pytest.raises(ConflictError, match=f"up to {LIMIT} documents"):
        await uploads.add(db, user, session.id, LIMIT)
    assert await _count(db, session.id) == LIMIT
    assert uploads.stored_files() == LIMIT


async def test_uploads_at_once_cannot_pass_the_limit_together(
    engine: AsyncEngine, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real, separate transactions, as three requests would have."""
    read = documents_service.extract

    def slow_read(data: bytes, **kwargs: Any) -> Any:
        time.sleep(0.3)  # every upload has passed the first count by now
        return read(data, **kwargs)

    async with AsyncSession(engine, expire_on_commit=False) as db:
        user = await make_user(db)
        session = await conversations.create_session(db, actor=user, character_id="socrates")
        for n in range(LIMIT - 1):
            await uploads.add(db, user, session.id, n)

    async def upload(n: int) -> object:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            actor = await db.get(User, user.id)
            assert actor is not None
            try:
                return await uploads.add(db, actor, session.id, n)
            except ConflictError as refused:
                return refused

    monkeypatch.setattr(documents_service, "extract", slow_read)
    try:
        # Three uploads for the one place left: only one may be added.
        outcomes = await asyncio.gather(*(upload(LIMIT + n) for n in range(3)))
        refused = [o for o in outcomes if isinstance(o, ConflictError)]
        assert len(refused) == 2, outcomes
        assert all(f"up to {LIMIT} documents" in str(o) for o in refused)
        async with AsyncSession(engine) as db:
            assert await _count(db, session.id) == LIMIT
        assert uploads.stored_files() == LIMIT  # the refused uploads' files are gone
    finally:
        async with AsyncSession(engine) as db:
            await db.delete(await db.get(User, user.id))
            await db.commit()


async def test_a_conversation_deleted_while_its_file_is_read_gets_nothing_stored(
    db: AsyncSession, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, session = await _new_conversation(db)
    read = documents_service.extract

    def read_then_delete(data: bytes, **kwargs: Any) -> Any:
        extracted = read(data, **kwargs)
        asyncio.run_coroutine_threadsafe(
            conversations.delete_session(db, actor=user, session_id=session.id), loop
        ).result(timeout=10)
        return extracted

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(documents_service, "extract", read_then_delete)
    with pytest.raises(NotFoundError, match="No such conversation"):
        await uploads.add(db, user, session.id, 1)
    assert uploads.stored_files() == 0


async def test_an_upload_that_fails_as_it_is_added_leaves_no_file(
    db: AsyncSession, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, session = await _new_conversation(db)

    check_room = documents_service._check_room

    async def gone_when_adding(db: AsyncSession, session_id: uuid.UUID, *, lock: bool) -> None:
        if lock:  # the file is saved by now
            raise ConnectionError("the database went away")
        await check_room(db, session_id, lock=lock)

    monkeypatch.setattr(documents_service, "_check_room", gone_when_adding)
    with pytest.raises(ConnectionError):
        await uploads.add(db, user, session.id, 1)
    assert uploads.stored_files() == 0


async def test_an_upload_added_while_its_conversation_is_deleted_goes_with_it(
    db: AsyncSession, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, session = await _new_conversation(db)
    await uploads.add(db, user, session.id, 1)
    purge = documents_service.purge_session_documents
    rounds: list[int] = []

    async def purge_then_upload(db: AsyncSession, **kwargs: Any) -> None:
        await purge(db, **kwargs)
        rounds.append(uploads.stored_files())
        if len(rounds) == 1:  # another upload lands between the purge and the deletion
            await uploads.add(db, user, session.id, 2)

    monkeypatch.setattr(documents_service, "purge_session_documents", purge_then_upload)
    await documents_service.delete_session_and_documents(
        db, actor=user, session_id=session.id, files=uploads.files, vector_store=FakeVectorStore()
    )
    assert rounds == [0, 0]
    assert uploads.stored_files() == 0  # the late upload's file went too
    with pytest.raises(NotFoundError):
        await conversations.get_owned_or_raise(db, actor=user, session_id=session.id)
