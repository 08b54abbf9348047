"""Users as chat actors.

Until sign-in lands, development mode acts as one local development user; the
adapters get their actor through ``current_actor`` so sign-in replaces one seam.
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import UnauthorizedError
from histora.models import Role, User
from histora.settings import Settings

DEVELOPMENT_EMAIL = "developer@histora.local"


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def development_user(db: AsyncSession) -> User:
    user = (await db.exec(select(User).where(User.email == DEVELOPMENT_EMAIL))).first()
    if user is None:
        user = User(email=DEVELOPMENT_EMAIL, display_name="Developer", role=Role.USER)
        db.add(user)
        await db.commit()
    return user


async def current_actor(db: AsyncSession, *, settings: Settings) -> User:
    """The acting user. Development only, until accounts exist; production refuses."""
    if settings.is_production:
        raise UnauthorizedError("Signing in is not available on this server yet.")
    return await development_user(db)
