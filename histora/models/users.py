"""Accounts and their credentials (refresh tokens, API keys)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlmodel import Field, SQLModel

from histora.models.base import (
    StrEnum,
    created_at_field,
    enum_field,
    new_id,
    optional_datetime_field,
    required_datetime_field,
    updated_at_field,
)


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("credits >= 0", name="ck_users_credits_nonnegative"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # Stored normalised (trimmed, lower-cased); see services.users.normalise_email.
    email: str = Field(sa_type=String(320), unique=True, index=True)
    display_name: str = Field(sa_type=String(80))
    role: Role = enum_field(Role.USER, index=True)
    password_hash: str | None = Field(default=None, sa_type=String(255))
    firebase_uid: str | None = Field(default=None, sa_type=String(128), unique=True)
    credits: int = Field(default=0)
    disabled: bool = Field(default=False)
    last_login_at: datetime | None = optional_datetime_field()
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class RefreshToken(SQLModel, table=True):
    """Opaque refresh tokens, stored hashed, rotated on every use.

    Tokens issued from one sign-in share a family; reusing a rotated token
    revokes the whole family.
    """

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(sa_type=String(64), unique=True)
    expires_at: datetime = required_datetime_field()
    revoked_at: datetime | None = optional_datetime_field()
    replaced_by_id: uuid.UUID | None = Field(default=None)
    user_agent: str | None = Field(default=None, sa_type=String(255))
    ip_address: str | None = Field(default=None, sa_type=String(64))
    created_at: datetime = created_at_field()


class ApiKey(SQLModel, table=True):
    """API keys for external clients; only a hash and a display prefix are kept."""

    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    name: str = Field(sa_type=String(80))
    prefix: str = Field(sa_type=String(16), index=True)
    key_hash: str = Field(sa_type=String(64), unique=True)
    last_used_at: datetime | None = optional_datetime_field()
    expires_at: datetime | None = optional_datetime_field()
    revoked_at: datetime | None = optional_datetime_field()
    created_at: datetime = created_at_field()


class UserPublic(SQLModel):
    """What a user (or an admin looking at users) may see: no hash, no provider ids."""

    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    credits: int
    disabled: bool = False  # the admin user list shows and toggles it
    created_at: datetime


class ApiKeyPublic(SQLModel):
    """An API key as listed to its owner; the secret is shown once, at creation."""

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
