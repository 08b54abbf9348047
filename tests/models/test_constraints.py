from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import ChatMessage, ChatSession, Document, DocumentScope
from tests.factories import make_character, make_user


async def test_emails_are_unique(db: AsyncSession) -> None:
    await make_user(db, email="same@example.com")
    with pytest.raises(IntegrityError):
        await make_user(db, email="same@example.com")


async def test_credits_cannot_go_negative(db: AsyncSession) -> None:
    with pytest.raises(IntegrityError):
        await make_user(db, credits=-1)


async def test_character_lifespan_must_be_ordered(db: AsyncSession) -> None:
    with pytest.raises(IntegrityError):
        await make_character(db, birth_year=1900, death_year=1800)


async def test_client_message_id_is_unique_per_session(db: AsyncSession) -> None:
    user = await make_user(db)
    character = await make_character(db)
    session = ChatSession(user_id=user.id, character_id=character.id)
    db.add(session)
    await db.commit()
    db.add(ChatMessage(session_id=session.id, content="hi", client_message_id="c-1"))
    await db.commit()
    db.add(ChatMessage(session_id=session.id, content="hi again", client_message_id="c-1"))
    with pytest.raises(IntegrityError):
        await db.commit()


async def test_document_scope_must_match_its_owner(db: AsyncSession) -> None:
    character = await make_character(db)
    db.add(
        Document(
            scope=DocumentScope.SESSION,
            character_id=character.id,
            filename="a.txt",
            size_bytes=1,
            sha256="0" * 64,
            storage_key="k",
        )
    )
    with pytest.raises(IntegrityError):
        await db.commit()


async def test_deleting_a_user_deletes_their_sessions(db: AsyncSession) -> None:
    user = await make_user(db)
    character = await make_character(db)
    session = ChatSession(user_id=user.id, character_id=character.id)
    db.add(session)
    await db.commit()
    await db.delete(user)
    await db.commit()
    db.expunge_all()
    assert await db.get(ChatSession, session.id) is None
