"""Prompt construction as pure functions: the character's voice, the knowledge
horizon, and conversation memory within the model's context budget."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from histora.models.characters import format_year
from histora.providers.chat_types import PromptMessage
from histora.services.text_input import without_bidi_controls

# Without a tokenizer for every provider, estimate: about 4 characters a token in
# English prose, plus a few tokens of per-message framing.
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
# Room kept free for estimation error and the chat template.
SAFETY_MARGIN_TOKENS = 64
SUMMARY_MAX_TOKENS = 200


@dataclass(frozen=True)
class CharacterVoice:
    """What the prompt needs to know about a character."""

    name: str
    system_prompt: str
    speaking_style: str
    knowledge_horizon_year: int
    era: str


@dataclass(frozen=True)
class SourcePassage:
    """A retrieved passage as the model sees it: numbered so the reply can cite it."""

    n: int
    document_name: str
    page: int | None
    text: str


@dataclass(frozen=True)
class MemoryPlan:
    """Which earlier turns go verbatim and which are folded into the summary."""

    recent: list[PromptMessage]
    to_fold: list[PromptMessage]


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


def estimate_prompt_tokens(messages: Sequence[PromptMessage]) -> int:
    return sum(estimate_tokens(message.content) for message in messages)


def horizon_rule(voice: CharacterVoice) -> str:
    year = format_year(voice.knowledge_horizon_year)
    return (
        f"Your knowledge ends in {year}. You know nothing of any event, person, idea or "
        f"invention after {year}. If asked about later things, do not pretend to know "
        "them and do not mention that time has passed: answer as yourself, from your "
        "own time, with curiosity or puzzlement, reasoning only from what you knew."
    )


def conduct_rules(voice: CharacterVoice) -> str:
    return (
        f"Always speak as {voice.name}, in the first person, never as an assistant or an "
        "AI, and never step out of character. Keep replies conversational: usually one "
        "to three short paragraphs. If you are unsure of a fact about your own life, "
        "say so plainly rather than invent it."
    )


def system_prompt(
    voice: CharacterVoice, *, summary: str = "", sources: Sequence[SourcePassage] = ()
) -> str:
    parts = [
        voice.system_prompt.strip(),
        f"Your manner of speaking: {voice.speaking_style.strip()}",
        horizon_rule(voice),
        conduct_rules(voice),
    ]
    if sources:
        parts.append(sources_section(sources))
    if summary.strip():
        parts.append(f"What has been said earlier in this conversation: {summary.strip()}")
    return "\n\n".join(parts)


def sources_section(sources: Sequence[SourcePassage]) -> str:
    listed = "\n\n".join(
        f"[{source.n}] {source.document_name}"
        + (f", page {source.page}" if source.page is not None else "")
        + f":\n{source.text.strip()}"
        for source in sources
    )
    return (
        "Passages from your sources that may bear on the question follow. Draw on them "
        "when they help, in your own voice, and cite each one you use with its number in "
        "square brackets, like [1], right after the sentence it supports. Cite only the "
        "numbers listed here. If they do not help, answer without citing.\n\n" + listed
    )


def fit_sources(
    sources: Sequence[SourcePassage], *, budget_tokens: int, min_chars: int = 300
) -> list[SourcePassage]:
    """Keep the best passages that fit the budget, trimming each to an equal share.

    Passages arrive best first; the weakest are dropped before any passage is cut
    below ``min_chars``, since a sliver of text cannot support a citation.
    """
    budget_chars = max(0, budget_tokens - MESSAGE_OVERHEAD_TOKENS * len(sources)) * CHARS_PER_TOKEN
    kept = list(sources)
    while kept and len(kept) * min_chars > budget_chars:
        kept.pop()
    if not kept:
        return []
    share = budget_chars // len(kept)
    return [SourcePassage(s.n, s.document_name, s.page, _trim_words(s.text, share)) for s in kept]


def _trim_words(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
    return cut + "…"


def cited_numbers(reply: str) -> set[int]:
    """The source numbers a reply cites, as [1] or [1, 3] or [2][4]."""
    numbers: set[int] = set()
    for group in _CITATION.findall(reply):
        numbers.update(int(part) for part in re.findall(r"\d+", group))
    return numbers


_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def plan_memory(history: Sequence[PromptMessage], *, budget_tokens: int) -> MemoryPlan:
    """Keep the newest turns verbatim within the budget; older ones are to be folded.

    The split never leaves an assistant reply without the user message it answered.
    """
    start = len(history)
    used = 0
    while start > 0:
        cost = estimate_tokens(history[start - 1].content)
        if used + cost > budget_tokens:
            break
        used += cost
        start -= 1
    while start < len(history) and history[start].role == "assistant":
        start += 1
    return MemoryPlan(recent=list(history[start:]), to_fold=list(history[:start]))


def history_budget(
    *, context_window: int, max_reply_tokens: int, system: str, user_message: str
) -> int:
    reserved = (
        max_reply_tokens
        + estimate_tokens(system)
        + estimate_tokens(user_message)
        + SAFETY_MARGIN_TOKENS
    )
    return max(0, context_window - reserved)


def summary_request(
    voice: CharacterVoice, *, previous_summary: str, turns: Sequence[PromptMessage]
) -> list[PromptMessage]:
    """Ask the model to fold older turns into a short running summary."""
    transcript = "\n".join(
        f"{'Visitor' if turn.role == 'user' else voice.name}: {turn.content.strip()}"
        for turn in turns
    )
    earlier = previous_summary.strip() or "(nothing yet)"
    return [
        PromptMessage(
            role="system",
            content=(
                "You keep notes on a conversation between a visitor and "
                f"{voice.name}. Write a short, factual summary in the third person "
                "(at most 120 words) of what was asked and answered, keeping names, "
                "facts and open questions. Reply with the summary only."
            ),
        ),
        PromptMessage(
            role="user",
            content=f"Summary so far:\n{earlier}\n\nNew turns:\n{transcript}",
        ),
    ]


def fallback_summary(previous_summary: str, turns: Sequence[PromptMessage]) -> str:
    """A summary built without the model, used when the model cannot summarise."""
    questions = [turn.content.strip().replace("\n", " ") for turn in turns if turn.role == "user"]
    topics = "; ".join(q[:80] for q in questions[-5:])
    addition = f"Earlier the visitor asked about: {topics}." if topics else ""
    return " ".join(part for part in (previous_summary.strip(), addition) if part)


def chat_messages(
    voice: CharacterVoice,
    *,
    summary: str,
    recent: Sequence[PromptMessage],
    user_message: str,
    sources: Sequence[SourcePassage] = (),
) -> list[PromptMessage]:
    return [
        PromptMessage(
            role="system", content=system_prompt(voice, summary=summary, sources=sources)
        ),
        *recent,
        PromptMessage(role="user", content=user_message),
    ]


def title_from_message(content: str, *, limit: int = 60) -> str:
    """A conversation's title from its first question: its words as typed (the question
    shows as typed too), without the invisible characters that would reorder them."""
    # Only the start can show: the rest of a long question is not read.
    plain = without_bidi_controls(content[: limit * 8])
    text = " ".join(plain.split())
    if len(text) <= limit:
        return text or "New conversation"
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + "…"
