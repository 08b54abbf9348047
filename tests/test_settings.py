from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from histora.deps import Container
from histora.errors import ConfigurationError
from histora.providers.local_model import local_model_spec
from histora.settings import Settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_model_provider == "local"
    assert settings.auth_mode == "local"
    assert settings.chroma_url is None and settings.redis_url is None


def test_openai_key_switches_provider(tmp_path: Path) -> None:
    settings = _settings(tmp_path, openai_api_key="sk-test")
    assert settings.resolved_model_provider == "openai"


def test_development_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    first = _settings(tmp_path).signing_secret()
    second = _settings(tmp_path).signing_secret()
    assert first == second
    assert len(first.encode()) >= 32
    mode = (tmp_path / "secret_key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_production_requires_secret_and_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="HISTORA_SECRET_KEY"):
        _settings(tmp_path, env="production").signing_secret()
    assert not (tmp_path / "secret_key").exists()


def test_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        _settings(tmp_path, secret_key="too-short").signing_secret()


def test_list_settings_accept_commas_and_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HISTORA_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("HISTORA_CHAT_MODELS", '["m/one", "m/two"]')
    settings = _settings(tmp_path)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.chat_models == ["m/one", "m/two"]


def test_chunk_overlap_must_be_smaller_than_chunk_size() -> None:
    with pytest.raises(ValueError, match="HISTORA_CHUNK_OVERLAP_CHARS"):
        Settings(_env_file=None, chunk_size_chars=500, chunk_overlap_chars=500)  # type: ignore[call-arg]


def test_a_turn_must_end_well_before_its_reply_is_taken_for_a_crashed_one(
    tmp_path: Path,
) -> None:
    # Defaults: summary and reply, two remote models at 60 s each, 10 s of retries each.
    remote = {"openai_api_key": "sk-test"}
    assert _settings(tmp_path, **remote).longest_turn_seconds == 2 * (2 * 60 + 10)
    assert _settings(tmp_path).longest_turn_seconds == 2 * (60 + 10)  # the local model
    # 2 * (3 * 86 + 10) = 536 s, and 60 s of margin, fit under 600 s; 87 s do not.
    _settings(tmp_path, **remote, chat_models="a,b,c", model_timeout_seconds=86)
    with pytest.raises(ValidationError, match="HISTORA_MODEL_TIMEOUT_SECONDS"):
        _settings(tmp_path, **remote, chat_models="a,b,c", model_timeout_seconds=87)
    with pytest.raises(ValidationError, match="number of HISTORA_CHAT_MODELS"):
        _settings(tmp_path, **remote, chat_models="a,b,c", model_timeout_seconds=87)
    with pytest.raises(ValidationError, match="HISTORA_MODEL_TIMEOUT_SECONDS") as local:
        _settings(tmp_path, model_timeout_seconds=300)  # local: 2 * (300 + 10)
    assert "HISTORA_CHAT_MODELS" not in str(local.value)  # one model, no chain to shorten


def test_reflex_redis_url_also_configures_histora(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HISTORA_REDIS_URL", raising=False)
    monkeypatch.setenv("REFLEX_REDIS_URL", "redis://redis.internal:6379/2")
    assert Settings(_env_file=None).redis_url == "redis://redis.internal:6379/2"  # type: ignore[call-arg]
    monkeypatch.setenv("HISTORA_REDIS_URL", "redis://other:6379/0")
    assert Settings(_env_file=None).redis_url == "redis://other:6379/0"  # type: ignore[call-arg]


def test_pages_on_another_port_are_allowed_unless_origins_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HISTORA_CORS_ORIGINS", raising=False)
    default = ["http://localhost:3000", "http://127.0.0.1:3000"]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.allowed_origins() == default
    assert settings.allowed_origins(3000) == default
    # `reflex run --frontend-port 3300`, or 3000 was busy and it moved on.
    assert settings.allowed_origins(3300) == [
        *default,
        "http://localhost:3300",
        "http://127.0.0.1:3300",
    ]
    # Origins an operator chose are the only ones.
    monkeypatch.setenv("HISTORA_CORS_ORIGINS", "https://histora.example")
    chosen = Settings(_env_file=None)  # type: ignore[call-arg]
    assert chosen.allowed_origins(3300) == ["https://histora.example"]


def test_reflex_is_told_the_origin_of_the_port_it_serves_on(tmp_path: Path) -> None:
    # `reflex run` sets REFLEX_FRONTEND_PORT, then the app reads rxconfig.py again.
    env = {key: value for key, value in os.environ.items() if not key.startswith("HISTORA_")}
    env |= {"HISTORA_DATA_DIR": str(tmp_path), "REFLEX_FRONTEND_PORT": "3300"}
    read = "import rxconfig; print(','.join(rxconfig.config.cors_allowed_origins))"
    result = subprocess.run(
        [sys.executable, "-c", read],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    origins = result.stdout.strip().splitlines()[-1].split(",")
    assert "http://localhost:3300" in origins and "http://127.0.0.1:3300" in origins


def test_local_model_is_asked_with_its_repetition_settings(tmp_path: Path) -> None:
    spec = local_model_spec(
        _settings(tmp_path, local_model_repeat_penalty=1.2, local_model_dry_multiplier=0.5)
    )
    assert dict(spec.extra_sampling) == {"repeat_penalty": 1.2, "dry_multiplier": 0.5}
    assert spec.sampling()["repeat_penalty"] == 1.2


def test_remote_chain_gets_the_penalty_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        openai_api_key="sk-test",
        chat_models="a,b",
        model_frequency_penalty=0.3,
        model_presence_penalty=0.1,
    )
    chain = Container(settings).chat_model.models
    assert [(m.name, m.frequency_penalty, m.presence_penalty) for m in chain] == [
        ("a", 0.3, 0.1),
        ("b", 0.3, 0.1),
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"local_model_repeat_penalty": 0.9},
        {"local_model_dry_multiplier": -1},
        {"model_frequency_penalty": 2.5},
    ],
)
def test_out_of_range_sampling_settings_are_refused(
    tmp_path: Path, values: dict[str, float]
) -> None:
    with pytest.raises(ValidationError):
        _settings(tmp_path, **values)
