"""The chat page's message lists: what a turn resends, and that nothing is lost or reordered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from histora.models import MessageRole, MessageStatus
from histora.models.chat import ChatMessagePublic
from histora.pages.chat.state import (
    RECENT_LIMIT,
    TAIL_MIN_CHARS,
    ChatState,
    _grown_draft,
    _starter_index,
)
from tests.support import reflex_root, substate

SESSION = uuid.uuid4()


def _chat_state() -> ChatState:
    return substate(reflex_root(), ChatState)


def _message(n: int) -> ChatMessagePublic:
    return ChatMessagePublic(
        id=uuid.uuid4(),
        session_id=SESSION,
        role=MessageRole.USER if n % 2 == 0 else MessageRole.ASSISTANT,
        content=f"message {n}",
        status=MessageStatus.COMPLETE,
        model=None,
        prompt_tokens=0,
        completion_tokens=0,
        credits_charged=0,
        error=None,
        client_message_id=None,
        citations=[],
        created_at=datetime.now(UTC),
    )


def _shown(state: ChatState) -> list[str]:
    return [m.content for m in [*state.messages, *state.recent]]


def test_new_messages_go_to_a_short_list_and_keep_their_order() -> None:
    state = _chat_state()
    history = [_message(n) for n in range(30)]
    state._show(history)
    assert state.recent == [] and not state.is_empty

    for n in range(30, 30 + 3 * RECENT_LIMIT + 1):
        state._append(_message(n))
        assert 1 <= len(state.recent) <= RECENT_LIMIT  # a turn resends these, not all

    assert _shown(state) == [f"message {n}" for n in range(30 + 3 * RECENT_LIMIT + 1)]
    assert len(state.messages) == 30 + 3 * RECENT_LIMIT


def test_regenerate_drops_the_last_reply_wherever_it_is() -> None:
    state = _chat_state()
    state._show([_message(0), _message(1)])
    assert state.can_regenerate
    state._drop_last()  # from the loaded history
    assert _shown(state) == ["message 0"] and not state.can_regenerate

    state._append(_message(1))
    assert state.can_regenerate
    state._drop_last()  # from the messages added on this page
    assert _shown(state) == ["message 0"] and state.recent == []


def test_an_empty_conversation_shows_the_starters() -> None:
    state = _chat_state()
    state._show([])
    assert state.is_empty and not state.can_regenerate
    state._append(_message(0))
    assert not state.is_empty


def test_the_draft_keeps_every_character_and_resends_little() -> None:
    """Streamed text reaches the page whole, while most flushes resend only the tail."""
    head, tail, sent, whole_drafts = "", "", 0, 0
    pieces = [f"word{n} " for n in range(800)]  # about 6,000 characters, 5 words a flush
    for start in range(0, len(pieces), 5):
        new_head, new_tail = _grown_draft(head, tail, "".join(pieces[start : start + 5]))
        sent += len(new_tail) + (len(new_head) if new_head != head else 0)
        head, tail = new_head, new_tail
        whole_drafts += len(head) + len(tail)  # what resending one draft var would cost
    assert head + tail == "".join(pieces)
    assert len(tail) < max(TAIL_MIN_CHARS, len(head) // 2)
    assert sent * 4 < whole_drafts


def test_only_a_starter_position_the_figure_has_fills_the_composer() -> None:
    starters = ["What is justice?", "What is virtue?", "Why question?"]
    assert _starter_index("0", starters) == 0
    assert _starter_index("2", starters) == 2
    for value in ("3", "-1", "", "1e1", " 1", "٣", "9" * 5000):
        assert _starter_index(value, starters) is None, value
