"""A test search over one character's knowledge base: what answers would draw on."""

from __future__ import annotations

import reflex as rx

from histora import deps
from histora.errors import HistoraError
from histora.models.documents import PassagePublic
from histora.pages.admin.knowledge_base_state import KnowledgeBaseState
from histora.services import search as search_service
from histora.state.session import background_actor

TOP_K = 5


class KnowledgeBaseSearchState(rx.State):
    query: str = ""
    hits: list[PassagePublic] = []
    searched: bool = False
    searching: bool = False
    error: str = ""

    @rx.event
    def reset_search(self) -> None:
        self.query, self.hits, self.searched, self.searching, self.error = "", [], False, False, ""

    @rx.event(background=True)
    async def search(self, form: dict[str, str]) -> None:
        query = str(form.get("query", ""))[: search_service.QUERY_MAX_CHARS + 1]
        async with self:
            if self.searching:
                return  # one search at a time
            self.query, self.searching, self.error = query, True, ""
        hits: list[PassagePublic] = []
        error = ""
        try:
            async with deps.db_session() as db:
                async with self:
                    actor = await background_actor(self, db)
                    kb = (await self.get_state(KnowledgeBaseState)).knowledge_base
                    character_id = kb.character_id if kb is not None else ""
                # Embedding the query and searching happen outside the lock.
                hits = await search_service.search_character(
                    db,
                    actor=actor,
                    retriever=deps.get_container().retriever,
                    character_id=character_id,
                    query=query,
                    k=TOP_K,
                )
        except HistoraError as exc:
            error = exc.public_message
        finally:
            async with self:
                self.hits, self.error, self.searching = hits, error, False
                self.searched = not error
