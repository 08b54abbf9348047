"""Local accounts: register, sign in, bearer credentials, profile, password, admin.

Rate limits sit one level up (``services.sign_in``), so these stay plain.
"""

from __future__ import annotations

import re
import uuid

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnauthorizedError,
)
from histora.models import CreditLedgerEntry, CreditReason, Role, User
from histora.models.base import utcnow
from histora.services import api_keys, tokens
from histora.services.admin import require_admin
from histora.services.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    validate_password_policy,
    verify_password,
)
from histora.services.text_input import refuse_nul
from histora.services.users import normalise_email
from histora.settings import Settings

log = structlog.get_logger(__name__)

BAD_CREDENTIALS = "Email or password is incorrect."
EMAIL_TAKEN = "An account with this email already exists."
MAX_EMAIL_LENGTH = 320
MAX_DISPLAY_NAME_LENGTH = 80
ADMIN_DISPLAY_NAME = "Administrator"
# Deliberately loose: one @, a dot in the domain, no spaces. Deliverability is
# the mail server's business, not a regular expression's.
_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def checked_email(email: str) -> str:
    clean = normalise_email(email)
    if len(clean) > MAX_EMAIL_LENGTH or not _EMAIL_PATTERN.fullmatch(clean):
        raise InvalidInputError("Enter a valid email address.")
    return clean


def checked_display_name(display_name: str) -> str:
    clean = refuse_nul(display_name.strip(), what="A name")
    if not 1 <= len(clean) <= MAX_DISPLAY_NAME_LENGTH:
        raise InvalidInputError(f"Enter a name of 1 to {MAX_DISPLAY_NAME_LENGTH} characters.")
    return clean


async def get_user_by_email(db: AsyncSession, *, email: str) -> User | None:
    return (await db.exec(select(User).where(User.email == normalise_email(email)))).first()


def _grant_signup_credits(db: AsyncSession, user: User, settings: Settings) -> None:
    """Start the balance and its ledger entry together (the ledger explains every credit)."""
    amount = settings.signup_credits
    if amount <= 0:
        return
    user.credits = amount
    db.add(
        CreditLedgerEntry(
            user_id=user.id,
            delta=amount,
            balance_after=amount,
            reason=CreditReason.SIGNUP,
            reference="signup",  # with the unique constraint: granted at most once
        )
    )


async def _insert_user(db: AsyncSession, user: User, settings: Settings) -> None:
    db.add(user)
    await db.flush()  # the user row first: the ledger entry references it
    _grant_signup_credits(db, user, settings)
    await db.commit()


async def register(
    db: AsyncSession, *, email: str, password: str, display_name: str, settings: Settings
) -> User:
    clean_email = checked_email(email)
    name = checked_display_name(display_name)
    validate_password_policy(password, email=clean_email, settings=settings)
    # Hash before looking the email up, so a taken address answers no faster.
    password_hash = await hash_password(password, settings=settings)
    if await get_user_by_email(db, email=clean_email) is not None:
        raise ConflictError(EMAIL_TAKEN)
    user = User(email=clean_email, display_name=name, role=Role.USER, password_hash=password_hash)
    try:
        await _insert_user(db, user, settings)
    except IntegrityError as exc:  # a concurrent registration took the address
        await db.rollback()
        raise ConflictError(EMAIL_TAKEN) from exc
    log.info("auth.registered", user_id=str(user.id))
    return user


async def authenticate(db: AsyncSession, *, email: str, password: str, settings: Settings) -> User:
    """The user for these credentials. Every failure says the same, in about the same time."""
    user = await get_user_by_email(db, email=email)
    stored = user.password_hash if user is not None else None
    if len(password) > MAX_PASSWORD_LENGTH:
        stored = None  # can never match; still pay for a hash so timing stays flat
    matches = await verify_password(stored, password, settings=settings)
    if user is None or not matches or user.disabled:
        raise UnauthorizedError(BAD_CREDENTIALS)
    if stored is not None and needs_rehash(stored, settings=settings):
        user.password_hash = await hash_password(password, settings=settings)
    user.last_login_at = utcnow()
    db.add(user)
    await db.commit()
    return user


async def authenticate_bearer(db: AsyncSession, *, token: str, settings: Settings) -> User:
    """The user behind an ``Authorization: Bearer`` credential: an API key or an access token."""
    if token.startswith(api_keys.KEY_PREFIX):
        return await api_keys.actor_from_api_key(db, key=token)
    return await tokens.actor_from_access_token(db, token=token, settings=settings)


async def change_password(
    db: AsyncSession,
    *,
    actor: User,
    current_password: str,
    new_password: str,
    settings: Settings,
) -> None:
    """Change the actor's password and sign out every session (the caller may start a new one)."""
    if not await verify_password(actor.password_hash, current_password, settings=settings):
        raise InvalidInputError("Your current password is incorrect.")
    validate_password_policy(new_password, email=actor.email, settings=settings)
    if new_password == current_password:
        raise InvalidInputError("Choose a new password that differs from the current one.")
    actor.password_hash = await hash_password(new_password, settings=settings)
    db.add(actor)
    # Commits the new hash together with the revocations.
    await tokens.revoke_all_refresh_tokens(db, actor=actor)
    log.info("auth.password_changed", user_id=str(actor.id))


async def update_profile(db: AsyncSession, *, actor: User, display_name: str) -> User:
    actor.display_name = checked_display_name(display_name)
    db.add(actor)
    await db.commit()
    return actor


async def ensure_admin(
    db: AsyncSession, *, email: str, password: str | None, settings: Settings
) -> User:
    """Create or promote the admin account; set its password when given. Idempotent."""
    clean_email = checked_email(email)
    if password is not None:
        validate_password_policy(password, email=clean_email, settings=settings)
    user = await get_user_by_email(db, email=clean_email)
    if user is None:
        password_hash = await hash_password(password, settings=settings) if password else None
        user = User(
            email=clean_email,
            display_name=ADMIN_DISPLAY_NAME,
            role=Role.ADMIN,
            password_hash=password_hash,
        )
        try:
            await _insert_user(db, user, settings)
            return user
        except IntegrityError:
            # Another worker created it at the same moment: promote that one instead.
            await db.rollback()
            user = await get_user_by_email(db, email=clean_email)
            if user is None:
                raise
    user.role = Role.ADMIN
    password_changed = password is not None and not await verify_password(
        user.password_hash, password, settings=settings
    )
    if password is not None and password_changed:
        user.password_hash = await hash_password(password, settings=settings)
    db.add(user)
    if password_changed:
        await tokens.revoke_all_refresh_tokens(db, actor=user)  # commits
    else:
        await db.commit()
    return user


async def set_disabled(
    db: AsyncSession, *, actor: User, user_id: uuid.UUID, disabled: bool
) -> User:
    """Admins only. Disabling signs the user out everywhere; API keys stop working at once."""
    require_admin(actor)
    if disabled and user_id == actor.id:
        raise InvalidInputError("You cannot disable your own account.")
    user = await db.get(User, user_id)
    if user is None:
        raise NotFoundError("No such user.")
    user.disabled = disabled
    db.add(user)
    if disabled:
        await tokens.revoke_all_refresh_tokens(db, actor=user)  # commits
    else:
        await db.commit()
    log.info("auth.user_disabled", actor_id=str(actor.id), user_id=str(user.id), disabled=disabled)
    return user
