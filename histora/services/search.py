"""Authorized search over sources: a character's knowledge base, or a conversation's.

``services.retrieval.retrieve`` does the work and trusts its caller; everything
here decides first who may see which scope.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import InvalidInputError, NotFoundError
from histora.models import Character, Role, User
from histora.models.documents import PassagePublic
from histora.providers.embedders import Embedder
from histora.providers.vector_store import VectorStore
from histora.services import characters as characters_service
from histora.services import conversations as conversations_service
from histora.services.keyword_search import KeywordIndexCache
from histora.services.retrieval import Passage, retrieve

QUERY_MAX_CHARS = 1000
MAX_K = 50


@dataclass(frozen=True)
class Retriever:
    """Everything a hybrid search needs, built once by the composition root."""

    embedder: Embedder
    vector_store: VectorStore
    keyword_cache: KeywordIndexCache
    k: int
    candidates: int
    min_similarity: float

    async def passages(
        self,
        db: AsyncSession,
        *,
        character_id: str | None,
        session_id: uuid.UUID | None,
        query: str,
        k: int | None = None,
    ) -> list[Passage]:
        """Unauthorized: callers in this module and ``services.chat`` check access first."""
        return await retrieve(
            db,
            embedder=self.embedder,
            vector_store=self.vector_store,
            keyword_cache=self.keyword_cache,
            character_id=character_id,
            session_id=session_id,
            query=query,
            k=k or self.k,
            candidates=max(self.candidates, k or self.k),
            min_similarity=self.min_similarity,
        )


def passage_public(passage: Passage) -> PassagePublic:
    return PassagePublic(
        document_id=passage.document_id,
        document_name=passage.document_name,
        page=passage.page,
        char_start=passage.char_start,
        char_end=passage.char_end,
        text=passage.text,
        score=round(passage.score, 4),
    )


def _checked(query: str, k: int | None) -> str:
    text = query.strip()
    if not text:
        raise InvalidInputError("Type something to search for.")
    if len(text) > QUERY_MAX_CHARS:
        raise InvalidInputError(f"A search is limited to {QUERY_MAX_CHARS} characters.")
    if k is not None and not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be between 1 and {MAX_K}.")
    return text


async def search_character(
    db: AsyncSession,
    *,
    actor: User,
    retriever: Retriever,
    character_id: str,
    query: str,
    k: int | None = None,
) -> list[PassagePublic]:
    """Signed-in users search published characters; admins also search drafts."""
    text = _checked(query, k)
    if actor.role == Role.ADMIN:
        character = await db.get(Character, character_id)
    else:
        character = await characters_service.get_published(db, character_id=character_id)
    if character is None:
        raise NotFoundError("No such character.")
    found = await retriever.passages(
        db, character_id=character.id, session_id=None, query=text, k=k
    )
    return [passage_public(passage) for passage in found]


async def search_session(
    db: AsyncSession,
    *,
    actor: User,
    retriever: Retriever,
    session_id: uuid.UUID,
    query: str,
    k: int | None = None,
) -> list[PassagePublic]:
    """What the conversation's answers draw on: the character's sources and the session's own."""
    text = _checked(query, k)
    session = await conversations_service.get_owned_or_raise(db, actor=actor, session_id=session_id)
    found = await retriever.passages(
        db, character_id=session.character_id, session_id=session.id, query=text, k=k
    )
    return [passage_public(passage) for passage in found]
