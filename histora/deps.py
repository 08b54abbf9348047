"""The composition root: builds providers from settings and hands them to callers.

Adapters (Reflex states, API routes, the CLI) get everything from the current
``Container``; tests install their own with ``use_container`` instead of patching
module globals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.db import SessionFactory, create_engine, create_session_factory, session_scope
from histora.providers.chat_models import ChatModel, OpenAICompatibleChatModel
from histora.providers.chat_types import ModelSpec
from histora.providers.embedders import Embedder, OpenAIEmbedder, build_embedder
from histora.providers.file_store import FileStore, LocalFileStore
from histora.providers.identity import FirebaseIdentityProvider, IdentityProvider
from histora.providers.local_chroma import LocalChromaServer
from histora.providers.local_model import LocalModelServer, local_chat_model, local_model_spec
from histora.providers.vector_store import ChromaVectorStore, VectorStore
from histora.services.extraction import ExtractionLimits
from histora.services.ingestion import IngestionContext
from histora.services.ingestion_worker import IngestionWorker
from histora.services.keyword_search import KeywordIndexCache
from histora.services.rate_limits import RateLimiter, rate_limiter_for
from histora.services.search import Retriever
from histora.settings import Settings, get_settings


class Container:
    """Lazily built providers for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> AsyncEngine:
        return create_engine(self.settings)

    @cached_property
    def session_factory(self) -> SessionFactory:
        return create_session_factory(self.engine)

    @cached_property
    def local_model_server(self) -> LocalModelServer | None:
        if self.settings.resolved_model_provider != "local":
            return None
        return LocalModelServer(self.settings)

    @cached_property
    def chat_model(self) -> ChatModel:
        settings = self.settings
        server = self.local_model_server
        if server is not None:
            return local_chat_model(
                server,
                [local_model_spec(settings)],
                timeout_seconds=settings.model_timeout_seconds,
                retry_budget_seconds=settings.model_retry_budget_seconds,
            )
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        chain = [
            ModelSpec(
                name=name,
                temperature=settings.model_temperature,
                max_tokens=settings.model_max_tokens,
                context_window=settings.model_context_window,
                first_token_timeout_seconds=settings.model_first_token_timeout_seconds,
                total_timeout_seconds=settings.model_timeout_seconds,
                frequency_penalty=settings.model_frequency_penalty,
                presence_penalty=settings.model_presence_penalty,
            )
            for name in settings.chat_models
        ]
        return OpenAICompatibleChatModel(
            provider_name="openai-compatible",
            base_url=settings.openai_base_url,
            api_key=api_key,
            models=chain,
            timeout_seconds=settings.model_timeout_seconds,
            retry_budget_seconds=settings.model_retry_budget_seconds,
        )

    @cached_property
    def local_chroma_server(self) -> LocalChromaServer | None:
        """The app's own Chroma server: only with several workers and no HISTORA_CHROMA_URL."""
        if not self.settings.manages_local_chroma:
            return None
        return LocalChromaServer(self.settings)

    @cached_property
    def vector_store(self) -> VectorStore:
        """A Chroma server when configured or managed; else the path in-process (one worker)."""
        url = self.settings.resolved_chroma_url
        if url:
            return ChromaVectorStore(url=url)
        return ChromaVectorStore(path=self.settings.resolved_chroma_path)

    @cached_property
    def file_store(self) -> FileStore:
        return LocalFileStore(self.settings.data_dir / "documents")

    @cached_property
    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits.from_settings(self.settings)

    def ingestion_context(self) -> IngestionContext:
        settings = self.settings
        return IngestionContext(
            session_factory=self.session_factory,
            files=self.file_store,
            embedder=self.embedder,
            vector_store=self.vector_store,
            limits=self.extraction_limits,
            chunk_size_chars=settings.chunk_size_chars,
            chunk_overlap_chars=settings.chunk_overlap_chars,
            batch_size=settings.embedding_batch_size,
            keyword_cache=self.keyword_cache,
        )

    @cached_property
    def ingestion_worker(self) -> IngestionWorker:
        return IngestionWorker(self.ingestion_context)

    @cached_property
    def keyword_cache(self) -> KeywordIndexCache:
        return KeywordIndexCache()

    @cached_property
    def retriever(self) -> Retriever:
        settings = self.settings
        return Retriever(
            embedder=self.embedder,
            vector_store=self.vector_store,
            keyword_cache=self.keyword_cache,
            k=settings.retrieval_k,
            candidates=settings.retrieval_candidates,
            min_similarity=settings.retrieval_min_score,
        )

    @cached_property
    def embedder(self) -> Embedder:
        """The local MiniLM by default; OpenAI's API when HISTORA_EMBEDDER=openai (needs a key)."""
        return build_embedder(self.settings)

    @cached_property
    def identity(self) -> IdentityProvider | None:
        """Firebase in firebase mode; local accounts need no outside identity provider."""
        if self.settings.auth_mode != "firebase":
            return None
        return FirebaseIdentityProvider(self.settings)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """In-memory counts per process by default; shared through Redis when configured."""
        return rate_limiter_for(self.settings)

    @asynccontextmanager
    async def db_session(self) -> AsyncIterator[AsyncSession]:
        async with session_scope(self.session_factory) as session:
            yield session

    async def aclose(self) -> None:
        if "engine" in self.__dict__:
            await self.engine.dispose()
        if isinstance(self.__dict__.get("identity"), FirebaseIdentityProvider):
            await self.__dict__["identity"].aclose()
        if "rate_limiter" in self.__dict__:
            await self.rate_limiter.aclose()
        if isinstance(self.__dict__.get("embedder"), OpenAIEmbedder):
            await self.__dict__["embedder"].aclose()


_container: Container | None = None


def get_container() -> Container:
    global _container
    if _container is None:
        _container = Container(get_settings())
    return _container


def use_container(container: Container | None) -> None:
    """Install a container (tests), or None to rebuild from settings on next use."""
    global _container
    _container = container


@asynccontextmanager
async def db_session() -> AsyncIterator[AsyncSession]:
    async with get_container().db_session() as session:
        yield session
