"""Test fixtures: a real database (SQLite by default, PostgreSQL when
HISTORA_TEST_DATABASE_URL is set), migrated once, with per-test rollback."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.api import create_api
from histora.db import create_engine, is_sqlite, sync_database_url
from histora.migrations import upgrade_to_head
from histora.models import User
from histora.providers.fakes import FakeChatModel, FakeEmbedder, FakeVectorStore
from histora.providers.file_store import LocalFileStore
from histora.services import seed as seed_service
from histora.services import tokens
from histora.settings import Settings
from tests.factories import make_user
from tests.support import EMULATOR_PROJECT, EMULATOR_VARIABLE

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _make_settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=database_url,
        seed_on_start=False,
        local_model_autostart=False,
        # Fast hashing in tests; production keeps the stronger defaults.
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
    )


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database for this run; dropped afterwards."""
    base = os.environ.get("HISTORA_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    name = f"histora_test_{uuid.uuid4().hex[:10]}"
    admin = create_sync_engine(sync_database_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Settings:
    return _make_settings(tmp_path_factory.mktemp("data"), database_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The migrated schema with the seed catalogue committed once."""
    upgrade_to_head(settings)
    engine = create_engine(settings)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await seed_service.seed_catalogue(session)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection per test inside a transaction that is always rolled back."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


@pytest.fixture
def session_factory(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    # Commits inside services release a SAVEPOINT; the outer transaction still rolls back.
    return async_sessionmaker(
        bind=connection,
        class_=AsyncSession,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def db(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with session_factory() as session:
        yield session


class FakeProvidersContainer(deps.Container):
    """The production container with the test database and in-repo fakes."""

    def __init__(
        self, settings: Settings, session_factory: async_sessionmaker[AsyncSession]
    ) -> None:
        super().__init__(settings)
        self.__dict__["session_factory"] = session_factory
        self.__dict__["chat_model"] = FakeChatModel()
        self.__dict__["vector_store"] = FakeVectorStore()
        self.__dict__["embedder"] = FakeEmbedder()


@pytest.fixture
def container(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> Iterator[FakeProvidersContainer]:
    test_container = FakeProvidersContainer(settings, session_factory)
    # Files outlive the rolled-back database rows, so each test gets its own store.
    test_container.__dict__["file_store"] = LocalFileStore(tmp_path / "documents")
    deps.use_container(test_container)
    yield test_container
    deps.use_container(None)


async def bearer_for(db: AsyncSession, user: User, settings: Settings) -> dict[str, str]:
    pair = await tokens.issue_token_pair(db, user=user, settings=settings)
    return {"Authorization": f"Bearer {pair.access_token}"}


@pytest.fixture
async def anon_client(container: FakeProvidersContainer) -> AsyncIterator[httpx.AsyncClient]:
    """A caller with no credentials."""
    api = create_api(container.settings)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def user(db: AsyncSession) -> User:
    return await make_user(db, display_name="Alice")


@pytest.fixture
async def client(
    anon_client: httpx.AsyncClient, db: AsyncSession, user: User, container: FakeProvidersContainer
) -> httpx.AsyncClient:
    """A caller signed in as ``user``."""
    anon_client.headers.update(await bearer_for(db, user, container.settings))
    return anon_client


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    if not is_sqlite(database_url):
        pytest.skip("SQLite-specific behaviour")


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def emulator_host() -> str:
    """The running Auth emulator; CI must have it, a local run without it skips."""
    host = os.environ.get(EMULATOR_VARIABLE)
    if host:
        return host
    message = (
        f"{EMULATOR_VARIABLE} is not set, so the Firebase Auth emulator is not running. "
        "Run the suite through scripts/test.sh, which wraps pytest in "
        "`npx firebase emulators:exec --only auth --project demo-histora`."
    )
    if _ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def firebase_container(
    container: FakeProvidersContainer, emulator_host: str
) -> AsyncIterator[FakeProvidersContainer]:
    """The test container in Firebase mode, against the running Auth emulator."""
    firebase_settings = container.settings.model_copy(
        update={
            "auth_mode": "firebase",
            "firebase_project_id": EMULATOR_PROJECT,
            "firebase_web_api_key": SecretStr("demo-web-api-key"),
            "firebase_auth_domain": f"{EMULATOR_PROJECT}.firebaseapp.com",
            "firebase_auth_emulator_host": emulator_host,
        }
    )
    firebase = FakeProvidersContainer(firebase_settings, container.session_factory)
    firebase.__dict__["file_store"] = container.file_store
    deps.use_container(firebase)
    yield firebase
    await firebase.aclose()
    deps.use_container(container)
