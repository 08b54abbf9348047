from __future__ import annotations

import uuid

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ForbiddenError, InvalidInputError
from histora.models import Role
from histora.services import admin as admin_service
from tests.factories import make_user


async def test_users_are_found_by_name_or_email_and_only_by_admins(db: AsyncSession) -> None:
    tag = uuid.uuid4().hex[:8]
    admin = await make_user(db, role=Role.ADMIN)
    by_name = await make_user(db, display_name=f"Hypatia {tag}")
    by_email = await make_user(db, email=f"{tag}@example.com")
    await make_user(db)

    found = await admin_service.list_users(db, actor=admin, query=tag.upper())

    assert {user.id for user in found.items} == {by_name.id, by_email.id}
    assert found.total == 2
    with pytest.raises(ForbiddenError):
        await admin_service.list_users(db, actor=by_name, query=tag)


async def test_a_search_holding_a_nul_character_is_refused(db: AsyncSession) -> None:
    # PostgreSQL cannot compare text with U+0000 in it: refused up front, on SQLite too.
    admin = await make_user(db, role=Role.ADMIN)

    with pytest.raises(InvalidInputError, match="U\\+0000"):
        await admin_service.list_users(db, actor=admin, query="ada\x00")
