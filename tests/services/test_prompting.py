"""Golden and unit tests for the pure prompt functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from histora.providers.chat_types import PromptMessage
from histora.services import prompting

GOLDEN = Path(__file__).parent / "golden"
VOICE = prompting.CharacterVoice(
    name="Socrates",
    system_prompt="I am Socrates of Athens, son of a stonemason.",
    speaking_style="Questions, irony, homely examples.",
    knowledge_horizon_year=-399,
    era="Classical Athens",
)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    assert text == path.read_text(encoding="utf-8"), f"prompt changed: update {path} if intended"


def test_system_prompt_matches_golden() -> None:
    _golden("system_prompt.txt", prompting.system_prompt(VOICE))


def test_system_prompt_with_summary_matches_golden() -> None:
    text = prompting.system_prompt(VOICE, summary="The visitor asked about courage.")
    _golden("system_prompt_with_summary.txt", text)


def test_summary_request_matches_golden() -> None:
    turns = [
        PromptMessage(role="user", content="What is courage?"),
        PromptMessage(role="assistant", content="Tell me first what you think it is."),
    ]
    messages = prompting.summary_request(VOICE, previous_summary="", turns=turns)
    _golden("summary_request.txt", "\n---\n".join(f"{m.role}: {m.content}" for m in messages))


def test_horizon_rule_writes_bce_years() -> None:
    assert "399 BCE" in prompting.horizon_rule(VOICE)


def _turns(count: int, size: int = 40) -> list[PromptMessage]:
    return [
        PromptMessage(role="user" if i % 2 == 0 else "assistant", content=f"{i}:" + "x" * size)
        for i in range(count)
    ]


def test_plan_memory_keeps_everything_within_budget() -> None:
    history = _turns(4)
    plan = prompting.plan_memory(history, budget_tokens=10_000)
    assert plan.recent == history and plan.to_fold == []


def test_plan_memory_folds_oldest_turns_first() -> None:
    history = _turns(10)
    per_turn = prompting.estimate_tokens(history[0].content)
    plan = prompting.plan_memory(history, budget_tokens=per_turn * 4)
    assert plan.to_fold + plan.recent == history
    assert plan.recent == history[-4:]


def test_plan_memory_never_starts_with_an_orphan_reply() -> None:
    history = _turns(6)
    per_turn = prompting.estimate_tokens(history[0].content)
    plan = prompting.plan_memory(history, budget_tokens=per_turn * 3)
    assert plan.recent[0].role == "user"
    assert plan.to_fold + plan.recent == history


def test_plan_memory_with_no_budget_folds_everything() -> None:
    history = _turns(3)
    assert prompting.plan_memory(history, budget_tokens=0).to_fold == history


def test_history_budget_subtracts_reply_and_prompt() -> None:
    budget = prompting.history_budget(
        context_window=2048, max_reply_tokens=384, system="s" * 400, user_message="u" * 40
    )
    expected = (
        2048
        - 384
        - prompting.estimate_tokens("s" * 400)
        - prompting.estimate_tokens("u" * 40)
        - prompting.SAFETY_MARGIN_TOKENS
    )
    assert budget == expected


def test_chat_messages_order() -> None:
    recent = _turns(2)
    messages = prompting.chat_messages(VOICE, summary="", recent=recent, user_message="Hello?")
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1].content == "Hello?"


def test_fallback_summary_lists_recent_questions() -> None:
    summary = prompting.fallback_summary("Earlier notes.", _turns(4, size=5))
    assert summary.startswith("Earlier notes. Earlier the visitor asked about: 0:xxxxx; 2:xxxxx")


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("  What   is justice? ", "What is justice?"),
        ("word " * 30, ("word " * 12).strip() + "…"),
        ("", "New conversation"),
        # As typed, as the question itself shows: code and math keep their marks.
        (
            "Does `__init__` run first? Is 2 ** 10 = 1024?",
            "Does `__init__` run first? Is 2 ** 10 = 1024?",
        ),
        ("1776.\n- Why did it start?", "1776. - Why did it start?"),
        ("My \u202eeltit\u202c and \u2067this\u2069", "My eltit and this"),
        ("שלום עולם", "שלום עולם"),  # right-to-left text needs no control characters
    ],
)
def test_title_from_message(text: str, title: str) -> None:
    assert prompting.title_from_message(text) == title


SOURCES = [
    prompting.SourcePassage(1, "apology.txt", None, "I know that I know nothing."),
    prompting.SourcePassage(2, "crito.pdf", 4, "One ought never to do wrong in return."),
]


def test_system_prompt_with_sources_matches_golden() -> None:
    text = prompting.system_prompt(
        VOICE, summary="The visitor asked about courage.", sources=SOURCES
    )
    _golden("system_prompt_with_sources.txt", text)


def test_fit_sources_keeps_everything_that_fits() -> None:
    assert prompting.fit_sources(SOURCES, budget_tokens=1000) == SOURCES


def test_fit_sources_drops_the_weakest_before_cutting_below_the_minimum() -> None:
    long = [prompting.SourcePassage(n, "d", None, "word " * 400) for n in (1, 2, 3)]
    fitted = prompting.fit_sources(long, budget_tokens=200, min_chars=300)
    assert [s.n for s in fitted] == [1, 2]
    assert all(len(s.text) <= 380 and s.text.endswith("…") for s in fitted)
    assert prompting.fit_sources(long, budget_tokens=10) == []


@pytest.mark.parametrize(
    ("reply", "numbers"),
    [
        ("As I wrote [1], and again [3].", {1, 3}),
        ("Both agree [1, 2]; see also [4][5].", {1, 2, 4, 5}),
        ("No citations here, only [brackets].", set()),
    ],
)
def test_cited_numbers(reply: str, numbers: set[int]) -> None:
    assert prompting.cited_numbers(reply) == numbers
