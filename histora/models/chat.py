"""Conversations and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from histora.models.base import (
    StrEnum,
    created_at_field,
    enum_field,
    new_id,
    optional_datetime_field,
    updated_at_field,
)
from histora.models.documents import CitationPublic

DEFAULT_TITLE = "New conversation"


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    STREAMING = "streaming"
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"


class ChatSession(SQLModel, table=True):
    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_user_updated", "user_id", "updated_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    character_id: str = Field(foreign_key="characters.id", ondelete="CASCADE", index=True)
    title: str = Field(default=DEFAULT_TITLE, sa_type=String(200))
    # Rolling summary of turns that no longer fit the model's context.
    summary: str = Field(default="", sa_type=Text)
    summarized_message_count: int = Field(default=0)
    archived: bool = Field(default=False)
    last_message_at: datetime | None = optional_datetime_field()
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class ChatMessage(SQLModel, table=True):
    __tablename__ = "chat_messages"
    __table_args__ = (
        # Idempotent sends: one message per client-supplied id within a session.
        UniqueConstraint("session_id", "client_message_id", name="uq_chat_messages_client_id"),
        Index("ix_chat_messages_session_created", "session_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="chat_sessions.id", ondelete="CASCADE")
    role: MessageRole = enum_field(MessageRole.USER)
    content: str = Field(default="", sa_type=Text)
    status: MessageStatus = enum_field(MessageStatus.COMPLETE)
    # The reply ended at the model's length limit (max tokens), not where the model
    # meant to end it: most likely mid-sentence.
    cut_short: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    model: str | None = Field(default=None, sa_type=String(200))
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    credits_charged: int = Field(default=0)
    error: str | None = Field(default=None, sa_type=Text)
    client_message_id: str | None = Field(default=None, sa_type=String(64))
    # [{"n": 1, "document_id": ..., "filename": ..., "page": ..., "text": ...}, ...]
    citations: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, nullable=False)
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class ChatSessionPublic(SQLModel):
    id: uuid.UUID
    character_id: str
    character_name: str
    title: str
    archived: bool
    preview: str
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None


class ChatMessagePublic(SQLModel):
    id: uuid.UUID
    session_id: uuid.UUID
    role: MessageRole
    content: str
    status: MessageStatus
    cut_short: bool
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    credits_charged: int
    error: str | None
    client_message_id: str | None
    citations: list[CitationPublic]
    created_at: datetime


# How a chat bubble shows a complete reply cut off by the model's length limit.
CUT_SHORT = "cut_short"


class ChatBubble(SQLModel):
    """What the chat page draws for a message. The page's message lists travel over the
    websocket whole whenever they change, so they carry only what is shown."""

    role: MessageRole
    content: str
    # The message's status, or CUT_SHORT for a complete reply that the model's length
    # limit ended: one field either way, in lists that travel whole.
    status: str
    citations: list[CitationPublic]

    @classmethod
    def of(cls, message: ChatMessagePublic) -> ChatBubble:
        return cls(
            role=message.role,
            content=message.content,
            status=CUT_SHORT if message.cut_short else message.status.value,
            citations=message.citations,
        )


class SessionLink(SQLModel):
    """A conversation in the chat page's list: its title, no preview or times. The list
    travels whole whenever it changes, and a preview or a time would change it after
    every reply; a title changes only when the conversation is named."""

    id: str
    title: str

    @classmethod
    def of(cls, session: ChatSessionPublic) -> SessionLink:
        return cls(id=str(session.id), title=session.title)
