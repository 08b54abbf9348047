"""Small factories for test data."""

from __future__ import annotations

import itertools
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import Character, CharacterStatus, Role, User

_counter = itertools.count(1)


async def make_character(db: AsyncSession, **overrides: Any) -> Character:
    n = next(_counter)
    values: dict[str, Any] = {
        "id": f"test-figure-{n}",
        "name": f"Test Figure {n}",
        "category": "science",
        "era": "Test era",
        "region": "Testland",
        "birth_year": 1800,
        "death_year": 1870,
        "knowledge_horizon_year": 1870,
        "short_bio": "A figure made for a test.",
        "long_bio": "First paragraph.\n\nSecond paragraph.",
        "traits": ["patient", "exact", "curious", "plain-spoken"],
        "speaking_style": "Short sentences.",
        "system_prompt": "I am Test Figure.",
        "opener": "Hello.",
        "starter_questions": ["One?", "Two?", "Three?"],
        "portrait": "/portraits/test.svg",
        "status": CharacterStatus.PUBLISHED,
        "featured": False,
    }
    values.update(overrides)
    character = Character(**values)
    db.add(character)
    await db.commit()
    return character


async def make_user(db: AsyncSession, **overrides: Any) -> User:
    n = next(_counter)
    values: dict[str, Any] = {
        "email": f"user{n}@example.com",
        "display_name": f"User {n}",
        "role": Role.USER,
    }
    values.update(overrides)
    user = User(**values)
    db.add(user)
    await db.commit()
    return user
