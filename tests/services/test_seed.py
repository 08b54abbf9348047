from __future__ import annotations

import re
from collections import Counter

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import Character
from histora.models.characters import CATEGORY_LABELS
from histora.services import seed as seed_service
from histora.settings import PROJECT_ROOT

SEED = seed_service.load_seed()


def test_seed_has_forty_figures_across_five_categories() -> None:
    categories = Counter(entry.category for entry in SEED)
    assert len(SEED) >= 40
    assert set(categories) == set(CATEGORY_LABELS)
    assert min(categories.values()) >= 5
    assert len({entry.id for entry in SEED}) == len(SEED)


def test_seed_features_eight_to_ten_figures() -> None:
    assert 8 <= sum(entry.featured for entry in SEED) <= 10


def test_seed_spans_eras_from_antiquity() -> None:
    births = [entry.birth_year for entry in SEED]
    assert min(births) < -400
    assert max(births) > 1800
    assert sum(year < 0 for year in births) >= 5


def test_seed_entries_are_complete() -> None:
    for entry in SEED:
        assert entry.birth_year < entry.death_year, entry.id
        assert entry.birth_year < entry.knowledge_horizon_year <= entry.death_year, entry.id
        assert len(entry.traits) >= 4, entry.id
        assert len(entry.starter_questions) == 3, entry.id
        assert all(q.strip().endswith("?") for q in entry.starter_questions), entry.id
        assert len(entry.long_bio) > 300, entry.id


def test_system_prompts_are_first_person_with_a_knowledge_horizon() -> None:
    for entry in SEED:
        prompt = entry.system_prompt
        assert prompt.startswith("I am "), entry.id
        horizon = abs(entry.knowledge_horizon_year)
        assert re.search(rf"\b{horizon}\b", prompt), f"{entry.id}: no horizon year in prompt"
        assert len(prompt.split()) >= 80, entry.id


def test_every_seed_portrait_exists_locally() -> None:
    for entry in SEED:
        path = PROJECT_ROOT / "assets" / entry.portrait_path().lstrip("/")
        assert path.is_file(), f"missing portrait for {entry.id}"
        assert "http" not in path.read_text().replace("http://www.w3.org/2000/svg", "")


async def test_seeding_again_changes_nothing(db: AsyncSession) -> None:
    result = await seed_service.seed_catalogue(db)
    assert result.created == [] and result.updated == []
    assert result.unchanged == len(SEED)


async def test_seeding_keeps_admin_edits_unless_overwriting(db: AsyncSession) -> None:
    socrates = (await db.exec(select(Character).where(Character.id == "socrates"))).one()
    original = socrates.short_bio
    socrates.short_bio = "Edited by an admin."
    db.add(socrates)
    await db.commit()

    await seed_service.seed_catalogue(db)
    await db.refresh(socrates)
    assert socrates.short_bio == "Edited by an admin."

    result = await seed_service.seed_catalogue(db, overwrite=True)
    await db.refresh(socrates)
    assert socrates.short_bio == original
    assert "socrates" in result.updated


async def test_seeding_restores_a_deleted_character(db: AsyncSession) -> None:
    plato = (await db.exec(select(Character).where(Character.id == "plato"))).one()
    await db.delete(plato)
    await db.commit()
    result = await seed_service.seed_catalogue(db)
    assert result.created == ["plato"]
