"""Uploaded sources and the metadata of their chunks (vectors live in the vector store)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from histora.models.base import StrEnum, created_at_field, enum_field, new_id, updated_at_field

# Files one upload request may carry (the web drop zone); each is held to the size cap.
MAX_FILES_PER_UPLOAD = 5


class DocumentScope(StrEnum):
    CHARACTER = "character"  # a character's knowledge base (admins)
    SESSION = "session"  # one chat session (its owner)


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    EXTRACTING = "extracting"
    EMBEDDING = "embedding"
    READY = "ready"
    FAILED = "failed"


class DocumentKind(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    TXT = "txt"
    MARKDOWN = "md"


class Document(SQLModel, table=True):
    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint(
            "(scope = 'character' AND character_id IS NOT NULL AND session_id IS NULL)"
            " OR (scope = 'session' AND session_id IS NOT NULL AND character_id IS NULL)",
            name="ck_documents_scope_owner",
        ),
        # Duplicate detection within a scope.
        UniqueConstraint("character_id", "sha256", name="uq_documents_character_sha256"),
        UniqueConstraint("session_id", "sha256", name="uq_documents_session_sha256"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    scope: DocumentScope = enum_field(DocumentScope.CHARACTER)
    character_id: str | None = Field(
        default=None, foreign_key="characters.id", ondelete="CASCADE", index=True
    )
    session_id: uuid.UUID | None = Field(
        default=None, foreign_key="chat_sessions.id", ondelete="CASCADE", index=True
    )
    uploaded_by_id: uuid.UUID | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", index=True
    )
    filename: str = Field(sa_type=String(255))
    kind: DocumentKind = enum_field(DocumentKind.TXT)
    size_bytes: int
    sha256: str = Field(sa_type=String(64))
    pages: int | None = None
    chunk_count: int = Field(default=0)
    status: DocumentStatus = enum_field(DocumentStatus.QUEUED, index=True)
    progress: float = Field(default=0.0)
    error: str | None = Field(default=None, sa_type=Text)
    # Generated name under the private storage directory, never a public path.
    storage_key: str = Field(sa_type=String(255))
    embedder: str = Field(default="", sa_type=String(120))
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class DocumentChunk(SQLModel, table=True):
    __tablename__ = "document_chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal", name="uq_document_chunks_ordinal"),
        Index("ix_document_chunks_document", "document_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    document_id: uuid.UUID = Field(foreign_key="documents.id", ondelete="CASCADE")
    ordinal: int
    page: int | None = None
    char_start: int
    char_end: int
    text: str = Field(sa_type=Text)


class DocumentPublic(SQLModel):
    """What users and clients see of a document: never its storage location."""

    id: uuid.UUID
    scope: DocumentScope
    character_id: str | None
    session_id: uuid.UUID | None
    filename: str
    kind: DocumentKind
    size_bytes: int
    pages: int | None
    chunk_count: int
    status: DocumentStatus
    progress: float
    error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_settled(self) -> bool:
        return self.status in (DocumentStatus.READY, DocumentStatus.FAILED)


class PassagePublic(SQLModel):
    """A retrieved passage: where it comes from, exactly, and how well it matched."""

    document_id: uuid.UUID
    document_name: str
    page: int | None
    char_start: int
    char_end: int
    text: str
    score: float


class CitationPublic(PassagePublic):
    """A passage as source [n] of a reply; stored with the message as a snapshot."""

    n: int
    cited: bool = False  # the reply referred to it as [n]


class KnowledgeBasePublic(SQLModel):
    """One character's knowledge base at a glance, for the admin pages."""

    character_id: str
    character_name: str
    character_status: str
    portrait: str
    documents: int
    ready: int
