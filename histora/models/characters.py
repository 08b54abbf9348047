"""The catalogue of historical figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import computed_field
from sqlalchemy import CheckConstraint, Index, String, Text
from sqlmodel import Field, SQLModel

from histora.models.base import (
    StrEnum,
    created_at_field,
    enum_field,
    json_list_field,
    optional_datetime_field,
    updated_at_field,
)


@dataclass(frozen=True)
class Category:
    id: str
    label: str


CATEGORIES: tuple[Category, ...] = (
    Category("philosophy", "Philosophy"),
    Category("science", "Science"),
    Category("art-literature", "Art & Literature"),
    Category("leadership", "Leaders & Statesmen"),
    Category("exploration-reform", "Explorers & Reformers"),
)
CATEGORY_LABELS = {category.id: category.label for category in CATEGORIES}


def category_label(category_id: str) -> str:
    return CATEGORY_LABELS.get(category_id, category_id.replace("-", " ").title())


def format_year(year: int | None) -> str:
    """470 BCE is stored as -470; show it the way people write it."""
    if year is None:
        return ""
    return f"{-year} BCE" if year < 0 else str(year)


def format_lifespan(birth_year: int, death_year: int | None) -> str:
    if death_year is None:
        return f"born {format_year(birth_year)}"
    if birth_year < 0 <= death_year:
        return f"{-birth_year} BCE – {death_year} CE"
    if birth_year < 0:
        return f"{-birth_year} – {-death_year} BCE"
    return f"{birth_year} – {death_year}"


class CharacterStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class Character(SQLModel, table=True):
    __tablename__ = "characters"
    __table_args__ = (
        CheckConstraint(
            "death_year IS NULL OR birth_year <= death_year", name="ck_characters_lifespan"
        ),
        Index("ix_characters_status_featured", "status", "featured"),
    )

    # A URL-safe slug such as "marcus-aurelius".
    id: str = Field(sa_type=String(64), primary_key=True)
    name: str = Field(sa_type=String(120), index=True)
    category: str = Field(sa_type=String(40), index=True)
    era: str = Field(sa_type=String(120))
    region: str = Field(default="", sa_type=String(120))
    # Astronomical convention for BCE: 470 BCE is stored as -470.
    birth_year: int
    death_year: int | None = None
    knowledge_horizon_year: int
    short_bio: str = Field(sa_type=String(300))
    long_bio: str = Field(sa_type=Text)
    traits: list[str] = json_list_field()
    speaking_style: str = Field(sa_type=Text)
    system_prompt: str = Field(sa_type=Text)
    opener: str = Field(sa_type=Text)
    starter_questions: list[str] = json_list_field()
    portrait: str = Field(default="", sa_type=String(255))
    status: CharacterStatus = enum_field(CharacterStatus.DRAFT, index=True)
    featured: bool = Field(default=False)
    published_at: datetime | None = optional_datetime_field()
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


class CharacterCard(SQLModel):
    """What a catalogue listing shows."""

    id: str
    name: str
    category: str
    era: str
    region: str
    birth_year: int
    death_year: int | None
    short_bio: str
    traits: list[str]
    portrait: str
    featured: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lifespan(self) -> str:
        return format_lifespan(self.birth_year, self.death_year)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def category_label(self) -> str:
        return category_label(self.category)


class CharacterPublic(CharacterCard):
    """The full public profile of a published character (no system prompt)."""

    knowledge_horizon_year: int
    long_bio: str
    speaking_style: str
    opener: str
    starter_questions: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def knowledge_horizon(self) -> str:
        return format_year(self.knowledge_horizon_year)


class CategoryPublic(SQLModel):
    id: str
    label: str
    count: int
