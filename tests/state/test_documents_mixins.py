"""The shared document mixins refuse a page State that does not say what its scope is."""

from __future__ import annotations

import pytest
import reflex as rx

from histora.pages.admin.knowledge_base_state import KnowledgeBaseState, KnowledgeBaseUploadState
from histora.pages.chat.documents_state import ChatDocumentsState, ChatUploadState
from histora.state.documents import DocumentListMixin, DocumentUploadMixin


def test_a_list_state_without_its_scope_hooks_is_refused() -> None:
    with pytest.raises(TypeError, match="_watch_target, _fetch, _reload"):

        class ScopelessListState(DocumentListMixin, rx.State):
            pass


def test_an_upload_state_without_its_destination_is_refused() -> None:
    with pytest.raises(TypeError, match="_store, _after_upload"):

        class NowhereUploadState(DocumentUploadMixin, rx.State):
            pass


def test_the_real_page_states_supply_every_hook() -> None:
    for state in (KnowledgeBaseState, ChatDocumentsState):
        assert all(callable(getattr(state, h)) for h in ("_watch_target", "_fetch", "_reload"))
    for state in (KnowledgeBaseUploadState, ChatUploadState):
        assert all(callable(getattr(state, h)) for h in ("_store", "_after_upload"))
