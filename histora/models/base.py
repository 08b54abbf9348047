"""Shared column types and helpers for the tables."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


# 64-bit ids on PostgreSQL; SQLite only auto-numbers a plain INTEGER PRIMARY KEY.
BigIntegerId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# String enums are stored as plain VARCHAR: no database enum types to migrate.
StrEnum = enum.StrEnum


def enum_field(default: StrEnum, *, index: bool = False) -> Any:
    return Field(default=default, sa_type=String(24), index=index)


def created_at_field() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def updated_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )


def optional_datetime_field() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)


def required_datetime_field() -> Any:
    return Field(sa_type=UTCDateTime, nullable=False)


def json_list_field() -> Any:
    return Field(default_factory=list, sa_type=JSON, nullable=False)


class Page(SQLModel, Generic[T]):
    """A page of results: the items and the total count matching the query."""

    items: list[T]
    total: int
