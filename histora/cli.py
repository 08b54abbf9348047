"""Command line: ``python -m histora.cli <command>``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from histora import deps
from histora.migrations import upgrade_to_head
from histora.services import seed as seed_service
from histora.services.portraits import portrait_svg
from histora.settings import PROJECT_ROOT


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")


async def _seed(overwrite: bool) -> None:
    container = deps.get_container()
    upgrade_to_head(container.settings)
    async with container.db_session() as db:
        result = await seed_service.seed_catalogue(db, overwrite=overwrite)
    await container.aclose()
    _out(
        f"created {len(result.created)}, updated {len(result.updated)}, "
        f"unchanged {result.unchanged}"
    )


def _portraits(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    entries = seed_service.load_seed()
    for entry in entries:
        svg = portrait_svg(character_id=entry.id, name=entry.name, category=entry.category)
        (target / f"{entry.id}.svg").write_text(svg, encoding="utf-8")
    _out(f"wrote {len(entries)} portraits to {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="histora", description="Histora administration")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    seed = commands.add_parser("seed", help="add missing catalogue characters")
    seed.add_argument(
        "--overwrite", action="store_true", help="also reset existing seed characters"
    )
    portraits = commands.add_parser("portraits", help="draw the seed portraits (SVG)")
    portraits.add_argument("--out", type=Path, default=PROJECT_ROOT / "assets" / "portraits")
    args = parser.parse_args(argv)

    if args.command == "migrate":
        upgrade_to_head(deps.get_container().settings)
        _out("database is at the newest revision")
    elif args.command == "seed":
        asyncio.run(_seed(args.overwrite))
    elif args.command == "portraits":
        _portraits(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
