"""All tables, imported here so the metadata is complete wherever models are used."""

from sqlmodel import SQLModel

from histora.models.billing import (
    BillingInterval,
    CreditLedgerEntry,
    CreditPackage,
    CreditReason,
    PricingPlan,
    Subscription,
    SubscriptionStatus,
    UsageEvent,
    UsageKind,
)
from histora.models.characters import Character, CharacterStatus
from histora.models.chat import ChatMessage, ChatSession, MessageRole, MessageStatus
from histora.models.documents import (
    Document,
    DocumentChunk,
    DocumentKind,
    DocumentScope,
    DocumentStatus,
)
from histora.models.users import ApiKey, RefreshToken, Role, User

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "BillingInterval",
    "Character",
    "CharacterStatus",
    "ChatMessage",
    "ChatSession",
    "CreditLedgerEntry",
    "CreditPackage",
    "CreditReason",
    "Document",
    "DocumentChunk",
    "DocumentKind",
    "DocumentScope",
    "DocumentStatus",
    "MessageRole",
    "MessageStatus",
    "PricingPlan",
    "RefreshToken",
    "Role",
    "Subscription",
    "SubscriptionStatus",
    "UsageEvent",
    "UsageKind",
    "User",
    "metadata",
]
