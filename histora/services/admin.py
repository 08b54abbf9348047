"""Admin-only views of the platform."""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ForbiddenError
from histora.models import Role, User
from histora.models.base import Page
from histora.models.users import UserPublic
from histora.services.text_input import refuse_nul


def require_admin(actor: User) -> None:
    if actor.role != Role.ADMIN or actor.disabled:
        raise ForbiddenError("Only administrators can do that.")


async def list_users(
    db: AsyncSession, *, actor: User, query: str = "", offset: int = 0, limit: int = 50
) -> Page[UserPublic]:
    require_admin(actor)
    statement = select(User)
    text = refuse_nul(query.strip().lower(), what="The search text")
    if text:
        pattern = f"%{text.replace('%', '').replace('_', '')}%"
        statement = statement.where(
            or_(func.lower(User.email).like(pattern), func.lower(User.display_name).like(pattern))
        )
    total = (await db.exec(select(func.count()).select_from(statement.subquery()))).one()
    rows = await db.exec(
        statement.order_by(col(User.created_at).desc()).offset(offset).limit(limit)
    )
    return Page[UserPublic](
        items=[UserPublic.model_validate(u, from_attributes=True) for u in rows], total=total
    )
