"""Credits, usage metering, plans, packages and subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from histora.models.base import (
    BigIntegerId,
    StrEnum,
    created_at_field,
    enum_field,
    new_id,
    optional_datetime_field,
    required_datetime_field,
    updated_at_field,
)


class UsageKind(StrEnum):
    CHAT = "chat"
    SUMMARY = "summary"
    EMBEDDING = "embedding"


class UsageEvent(SQLModel, table=True):
    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_user_created", "user_id", "created_at"),
        Index("ix_usage_events_created", "created_at"),
    )

    id: int | None = Field(default=None, sa_type=BigIntegerId, primary_key=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="chat_sessions.id", ondelete="SET NULL"
    )
    message_id: uuid.UUID | None = Field(
        default=None, foreign_key="chat_messages.id", ondelete="SET NULL"
    )
    character_id: str | None = Field(default=None, sa_type=String(64), index=True)
    kind: UsageKind = enum_field(UsageKind.CHAT)
    model: str = Field(default="", sa_type=String(200))
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    credits: int = Field(default=0)
    latency_ms: int | None = None
    created_at: datetime = created_at_field()


class CreditReason(StrEnum):
    SIGNUP = "signup"
    CHAT = "chat"
    PURCHASE = "purchase"
    SUBSCRIPTION = "subscription"
    ADMIN_GRANT = "admin_grant"
    REFUND = "refund"


class CreditLedgerEntry(SQLModel, table=True):
    """Append-only record of every change to a user's credits."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        CheckConstraint("balance_after >= 0", name="ck_credit_ledger_balance_nonnegative"),
        # A payment or message is credited or charged at most once.
        UniqueConstraint("user_id", "reason", "reference", name="uq_credit_ledger_reference"),
        Index("ix_credit_ledger_user_created", "user_id", "created_at"),
    )

    id: int | None = Field(default=None, sa_type=BigIntegerId, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    delta: int
    balance_after: int
    reason: CreditReason = enum_field(CreditReason.CHAT)
    reference: str | None = Field(default=None, sa_type=String(128))
    created_at: datetime = created_at_field()


class BillingInterval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class PricingPlan(SQLModel, table=True):
    __tablename__ = "pricing_plans"
    __table_args__ = (CheckConstraint("price_cents >= 0", name="ck_pricing_plans_price"),)

    id: str = Field(sa_type=String(64), primary_key=True)
    name: str = Field(sa_type=String(80))
    description: str = Field(default="", sa_type=String(500))
    price_cents: int
    currency: str = Field(default="usd", sa_type=String(3))
    interval: BillingInterval = enum_field(BillingInterval.MONTH)
    monthly_credits: int
    features: list[Any] = Field(default_factory=list, sa_type=JSON, nullable=False)
    active: bool = Field(default=True)
    sort_order: int = Field(default=0)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class CreditPackage(SQLModel, table=True):
    __tablename__ = "credit_packages"
    __table_args__ = (
        CheckConstraint("credits > 0", name="ck_credit_packages_credits"),
        CheckConstraint("price_cents >= 0", name="ck_credit_packages_price"),
    )

    id: str = Field(sa_type=String(64), primary_key=True)
    name: str = Field(sa_type=String(80))
    credits: int
    price_cents: int
    currency: str = Field(default="usd", sa_type=String(3))
    active: bool = Field(default=True)
    sort_order: int = Field(default=0)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"


class Subscription(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_user_status", "user_id", "status"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    plan_id: str = Field(foreign_key="pricing_plans.id", ondelete="RESTRICT", index=True)
    status: SubscriptionStatus = enum_field(SubscriptionStatus.ACTIVE)
    current_period_start: datetime = required_datetime_field()
    current_period_end: datetime = required_datetime_field()
    cancel_at_period_end: bool = Field(default=False)
    canceled_at: datetime | None = optional_datetime_field()
    external_id: str | None = Field(default=None, sa_type=String(128), unique=True)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
