"""Seeding the catalogue: idempotent, run on first start and by the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import Character, CharacterStatus
from histora.models.base import utcnow
from histora.models.characters import CATEGORY_LABELS

SEED_PACKAGE = "histora.seed"
SEED_FILE = "characters.json"


class CharacterSeed(BaseModel):
    """One entry of the seed catalogue, validated before it touches the database."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    name: str = Field(min_length=1, max_length=120)
    category: str
    era: str = Field(min_length=1)
    region: str = Field(min_length=1)
    birth_year: int
    death_year: int
    knowledge_horizon_year: int
    short_bio: str = Field(min_length=1, max_length=300)
    long_bio: str = Field(min_length=1)
    traits: list[str] = Field(min_length=4)
    speaking_style: str = Field(min_length=1)
    system_prompt: str = Field(min_length=1)
    opener: str = Field(min_length=1)
    starter_questions: list[str] = Field(min_length=3, max_length=3)
    featured: bool = False

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in CATEGORY_LABELS:
            raise ValueError(f"unknown category {value!r}")
        return value

    def portrait_path(self) -> str:
        return f"/portraits/{self.id}.svg"


@dataclass
class SeedResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0


def load_seed() -> list[CharacterSeed]:
    raw = resources.files(SEED_PACKAGE).joinpath(SEED_FILE).read_text(encoding="utf-8")
    return [CharacterSeed.model_validate(item) for item in json.loads(raw)]


async def seed_catalogue(db: AsyncSession, *, overwrite: bool = False) -> SeedResult:
    """Insert seed characters that are missing; with ``overwrite``, reset the others.

    Without ``overwrite`` an existing character is never touched, so admin edits
    survive restarts.
    """
    result = SeedResult()
    existing = {c.id: c for c in (await db.exec(select(Character))).all()}
    now = utcnow()
    for entry in load_seed():
        values = entry.model_dump()
        values["portrait"] = entry.portrait_path()
        character = existing.get(entry.id)
        if character is None:
            db.add(Character(**values, status=CharacterStatus.PUBLISHED, published_at=now))
            result.created.append(entry.id)
        elif overwrite:
            for key, value in values.items():
                setattr(character, key, value)
            db.add(character)
            result.updated.append(entry.id)
        else:
            result.unchanged += 1
    await db.commit()
    return result
