"""The data behind the admin characters page: every character with its document counts."""

from __future__ import annotations

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ForbiddenError, NotFoundError
from histora.models import CharacterStatus, Document, DocumentStatus, Role
from histora.services import documents as documents_service
from tests.conftest import FakeProvidersContainer
from tests.factories import make_character, make_user


async def test_admins_see_every_character_with_counts(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    draft = await make_character(db, status=CharacterStatus.DRAFT)
    for n, text in enumerate((b"First source text.", b"Second source text.")):
        uploaded = await documents_service.upload_to_character(
            db,
            actor=admin,
            character_id=draft.id,
            upload=documents_service.Upload(f"source-{n}.txt", text),
            files=container.file_store,
            limits=container.extraction_limits,
        )
    row = await db.get(Document, uploaded.id)
    assert row is not None
    row.status = DocumentStatus.READY
    await db.commit()

    found = await documents_service.list_knowledge_bases(db, actor=admin)
    by_id = {kb.character_id: kb for kb in found}
    assert by_id[draft.id].documents == 2 and by_id[draft.id].ready == 1
    assert by_id[draft.id].character_status == "draft"
    assert by_id["socrates"].character_name == "Socrates"
    one = await documents_service.get_knowledge_base(db, actor=admin, character_id=draft.id)
    assert one == by_id[draft.id]


async def test_only_admins_list_knowledge_bases(db: AsyncSession) -> None:
    user = await make_user(db)
    with pytest.raises(ForbiddenError):
        await documents_service.list_knowledge_bases(db, actor=user)
    admin = await make_user(db, role=Role.ADMIN)
    with pytest.raises(NotFoundError):
        await documents_service.get_knowledge_base(db, actor=admin, character_id="nobody")
