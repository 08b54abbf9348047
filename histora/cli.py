"""Command line: ``python -m histora.cli <command>``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from histora import deps
from histora.errors import ConfigurationError, HistoraError
from histora.migrations import upgrade_to_head
from histora.services import auth as auth_service
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


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")


async def _create_admin(email: str, password: str) -> None:
    container = deps.get_container()
    upgrade_to_head(container.settings)
    try:
        async with container.db_session() as db:
            user = await auth_service.ensure_admin(
                db, email=email, password=password, settings=container.settings
            )
            _out(f"admin ready: {user.email}")
    finally:
        await container.aclose()


def _admin_credentials(args: argparse.Namespace) -> tuple[str, str]:
    """Email and password from the flags, else from settings; never echoed."""
    settings = deps.get_container().settings
    email = args.email or settings.admin_email
    if not email:
        raise ConfigurationError("No admin email: pass --email or set HISTORA_ADMIN_EMAIL.")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif settings.admin_password is not None:
        password = settings.admin_password.get_secret_value()
    else:
        password = ""
    if not password:
        raise ConfigurationError(
            "No admin password: pipe it to --password-stdin or set HISTORA_ADMIN_PASSWORD."
        )
    return email, password


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
    admin = commands.add_parser("create-admin", help="create or promote the admin account")
    admin.add_argument("--email", help="the admin's email (default: HISTORA_ADMIN_EMAIL)")
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (default: HISTORA_ADMIN_PASSWORD)",
    )
    portraits = commands.add_parser("portraits", help="draw the seed portraits (SVG)")
    portraits.add_argument("--out", type=Path, default=PROJECT_ROOT / "assets" / "portraits")
    args = parser.parse_args(argv)

    if args.command == "migrate":
        upgrade_to_head(deps.get_container().settings)
        _out("database is at the newest revision")
    elif args.command == "seed":
        asyncio.run(_seed(args.overwrite))
    elif args.command == "create-admin":
        try:
            email, password = _admin_credentials(args)
            asyncio.run(_create_admin(email, password))
        except HistoraError as exc:
            _err(f"create-admin: {exc.public_message}")
            return 1
    elif args.command == "portraits":
        _portraits(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
