"""The chat page's message lists: what a turn resends, and that nothing is lost or reordered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from histora.models import MessageRole, MessageStatus
from histora.models.chat import ChatBubble, ChatMessagePublic
from histora.pages.chat.state import (
    DRAFT_MERGE_MIN_CHARS,
    EMPTY_DRAFT,
    MESSAGES_MERGE_MIN,
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
    return [m.content for m in [*state.messages, *state.middle, *state.recent]]


def test_new_messages_go_to_short_lists_and_keep_their_order() -> None:
    state = _chat_state()
    history = [_message(n) for n in range(300)]
    state._show(history)
    assert state.recent == state.middle == [] and not state.is_empty

    resent = 0
    for n in range(300, 400):
        state.dirty_vars.clear()
        state._append(_message(n))
        # Reflex resends each list that was assigned, whole.
        lists = state.dirty_vars & {"messages", "middle", "recent"}
        resent += sum(len(getattr(state, name)) for name in lists)
        assert len(state.recent) < max(MESSAGES_MERGE_MIN[1], len(state.middle) // 2)
        assert len(state.middle) < max(MESSAGES_MERGE_MIN[0], len(state.messages) // 2)

    assert _shown(state) == [f"message {n}" for n in range(400)]
    # 100 turns' messages on a page that opened with 300: with one short list moved
    # into the whole conversation every 8 messages, about 4,600 were resent.
    assert resent < 1_500, resent
    # The lists hold the bubbles themselves, never Reflex's change-tracking proxies.
    stored = [*state.get_value("messages"), *state.get_value("middle"), *state.get_value("recent")]
    assert all(type(bubble) is ChatBubble for bubble in stored)


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
    draft, sent, whole_drafts, flushes = EMPTY_DRAFT, 0, 0, 0
    pieces = [f"word{n} " for n in range(800)]  # about 6,000 characters, 5 words a flush
    for start in range(0, len(pieces), 5):
        grown = _grown_draft(draft, "".join(pieces[start : start + 5]))
        # Reflex resends the parts that changed, each whole.
        sent += sum(len(new) for new, old in zip(grown, draft, strict=True) if new != old)
        draft, flushes = grown, flushes + 1
        whole_drafts += len("".join(draft))  # what resending one draft var would cost
        head, middle, tail = draft
        assert len(middle) < max(DRAFT_MERGE_MIN_CHARS[0], len(head) // 2)
        assert len(tail) < max(DRAFT_MERGE_MIN_CHARS[1], len(middle) // 2)
    text = "".join(pieces)
    assert "".join(draft) == text
    # For this reply, two parts (the tail moving into the head at 128 characters)
    # sent 15.6 characters per character; three send 6.7.
    assert sent < 7 * len(text), sent / len(text)
    assert sent * 10 < whole_drafts


def test_a_short_draft_is_all_tail() -> None:
    assert _grown_draft(EMPTY_DRAFT, "Hello") == ("", "", "Hello")
    head, middle, tail = _grown_draft(("", "", "x" * 90), "y" * 10)
    assert (head, middle, tail) == ("", "x" * 90 + "y" * 10, "")


def test_only_a_starter_position_the_figure_has_fills_the_composer() -> None:
    starters = ["What is justice?", "What is virtue?", "Why question?"]
    assert _starter_index("0", starters) == 0
    assert _starter_index("2", starters) == 2
    for value in ("3", "-1", "", "1e1", " 1", "٣", "9" * 5000):
        assert _starter_index(value, starters) is None, value
