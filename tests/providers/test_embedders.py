"""Embedders: the packaged MiniLM for real, OpenAI's API against a local fake server, the fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from histora.deps import Container
from histora.errors import ConfigurationError, ProviderError
from histora.providers.embedders import (
    LocalOnnxEmbedder,
    OpenAIEmbedder,
    vector_space,
)
from histora.providers.fakes import FakeEmbedder
from histora.settings import Settings
from histora.testing.fake_openai_server import FakeOpenAIServer, ModelScript

ANGER = "How should a man deal with his anger toward others?"
WRATH = "Rage and fury at other people harm the one who feels them."
STARS = "The telescope showed four moons circling the planet Jupiter."


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def local(settings: Settings) -> LocalOnnxEmbedder:
    return LocalOnnxEmbedder(settings)


async def test_local_embedder_has_384_normalised_dimensions(local: LocalOnnxEmbedder) -> None:
    vectors = await local.embed_documents([ANGER, STARS])
    query = await local.embed_query(ANGER)

    assert local.dimension == 384 and vector_space(local) == "minilm-l6-v2-int8-384"
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert query.shape == (384,)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)


async def test_local_embedder_puts_similar_sentences_closer(local: LocalOnnxEmbedder) -> None:
    anger, wrath, stars = await local.embed_documents([ANGER, WRATH, STARS])

    assert cosine(anger, wrath) > cosine(anger, stars) + 0.15
    assert cosine(wrath, stars) < 0.2


async def test_local_embedder_keeps_input_order_when_batching(settings: Settings) -> None:
    embedder = LocalOnnxEmbedder(settings.model_copy(update={"embedding_batch_size": 2}))
    # Lengths out of order, so sorting by length really reorders the batches.
    texts = [STARS * 3, "Anger.", WRATH, ANGER * 2, "", STARS]

    together = await embedder.embed_documents(texts)

    for text, row in zip(texts, together, strict=True):
        alone = await embedder.embed_query(text)
        # Padding in a batch shifts int8 activations slightly; the vector stays the same.
        assert cosine(row, alone) > 0.99


async def test_local_embedder_is_deterministic(local: LocalOnnxEmbedder) -> None:
    first = await local.embed_documents([ANGER, WRATH, STARS])
    second = await local.embed_documents([ANGER, WRATH, STARS])

    assert np.array_equal(first, second)
    assert (await local.embed_documents([])).shape == (0, 384)


async def test_local_embedder_serves_concurrent_callers(local: LocalOnnxEmbedder) -> None:
    expected = await local.embed_query(ANGER)

    results = await asyncio.gather(*(local.embed_query(ANGER) for _ in range(8)))

    assert all(np.array_equal(result, expected) for result in results)


async def test_local_embedder_truncates_long_texts(local: LocalOnnxEmbedder) -> None:
    long_text = " ".join([WRATH] * 200)  # far beyond 256 tokens

    [vector] = await local.embed_documents([long_text])

    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


async def test_local_embedder_without_tokenizer_names_the_install_script(
    settings: Settings, tmp_path: Path
) -> None:
    missing = settings.model_copy(update={"local_embedder_tokenizer": tmp_path / "none.json"})
    embedder = LocalOnnxEmbedder(missing)

    with pytest.raises(ConfigurationError) as raised:
        await embedder.embed_query(ANGER)
    health = await embedder.check_health()

    assert "scripts/install_local_embedder.sh" in str(raised.value)
    assert not health.ok and "install_local_embedder.sh" in health.detail


async def test_local_embedder_health_loads_the_model(local: LocalOnnxEmbedder) -> None:
    health = await local.check_health()
    assert health.ok and health.provider == "local-onnx"


# OpenAI embeddings against a real HTTP server on loopback.


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAIServer]:
    server = FakeOpenAIServer({"fake-embed": ModelScript(embedding_dimension=16)})
    async with server.serve():
        yield server


def openai_embedder(server: FakeOpenAIServer, **overrides: object) -> OpenAIEmbedder:
    values: dict[str, object] = {
        "model": "fake-embed",
        "base_url": server.base_url,
        "api_key": "test-key",
        "batch_size": 2,
        "max_retries": 0,
    }
    values.update(overrides)
    return OpenAIEmbedder(**values)  # type: ignore[arg-type]


async def test_openai_embedder_batches_and_keeps_order(openai_server: FakeOpenAIServer) -> None:
    embedder = openai_embedder(openai_server)
    texts = ["anger", "calm sea", "anger anger", "stars", "moons of jupiter"]

    vectors = await embedder.embed_documents(texts)

    assert openai_server.requests["fake-embed"] == 3  # batches of 2, 2 and 1
    assert vectors.shape == (5, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The server answers in reverse order; the client sorts by index.
    assert cosine(vectors[0], vectors[2]) == pytest.approx(1.0)
    assert cosine(vectors[0], vectors[3]) < 0.5
    await embedder.aclose()


async def test_openai_embedder_learns_an_unknown_dimension(
    openai_server: FakeOpenAIServer,
) -> None:
    embedder = openai_embedder(openai_server)
    with pytest.raises(ProviderError):
        _ = embedder.dimension

    query = await embedder.embed_query("anger")

    assert query.shape == (16,) and embedder.dimension == 16
    assert vector_space(embedder) == "openai-fake-embed-16"
    await embedder.aclose()


async def test_openai_embedder_knows_openai_dimensions() -> None:
    embedder = OpenAIEmbedder(
        model="text-embedding-3-large", base_url="http://127.0.0.1:9", api_key="k", batch_size=8
    )
    assert embedder.dimension == 3072 and embedder.name == "openai-text-embedding-3-large"


async def test_openai_embedder_rejects_a_wrong_dimension(openai_server: FakeOpenAIServer) -> None:
    embedder = openai_embedder(openai_server, dimension=1536)

    with pytest.raises(ProviderError):
        await embedder.embed_query("anger")
    await embedder.aclose()


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_openai_embedder_http_errors_are_provider_errors(
    openai_server: FakeOpenAIServer, status: int
) -> None:
    openai_server.register("fake-embed", ModelScript(status_code=status))
    embedder = openai_embedder(openai_server)

    with pytest.raises(ProviderError):
        await embedder.embed_documents(["anger"])
    health = await embedder.check_health()

    assert not health.ok and health.provider == "openai"
    await embedder.aclose()


async def test_openai_embedder_unreachable_is_a_provider_error() -> None:
    embedder = OpenAIEmbedder(
        model="fake-embed",
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        batch_size=8,
        max_retries=0,
    )
    with pytest.raises(ProviderError):
        await embedder.embed_query("anger")
    await embedder.aclose()


async def test_openai_embedder_health_and_blank_text(openai_server: FakeOpenAIServer) -> None:
    embedder = openai_embedder(openai_server)

    assert (await embedder.check_health()).ok
    vectors = await embedder.embed_documents(["", "anger"])  # the API refuses empty strings

    assert vectors.shape == (2, 16)
    await embedder.aclose()


# Choosing the embedder from settings.


def test_container_builds_the_local_embedder_by_default(settings: Settings) -> None:
    assert isinstance(Container(settings).embedder, LocalOnnxEmbedder)


def test_container_openai_embedder_without_key_names_the_variable(settings: Settings) -> None:
    container = Container(
        settings.model_copy(update={"embedder": "openai", "openai_api_key": None})
    )

    with pytest.raises(ConfigurationError) as raised:
        _ = container.embedder

    assert "HISTORA_OPENAI_API_KEY" in str(raised.value)


async def test_container_builds_and_closes_the_openai_embedder(settings: Settings) -> None:
    from pydantic import SecretStr

    container = Container(
        settings.model_copy(update={"embedder": "openai", "openai_api_key": SecretStr("k")})
    )

    embedder = container.embedder

    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.dimension == 1536  # text-embedding-3-small, the default model
    await container.aclose()


async def test_embeddings_can_use_their_own_endpoint_and_key(
    settings: Settings, openai_server: FakeOpenAIServer
) -> None:
    from pydantic import SecretStr

    chosen = settings.model_copy(
        update={
            "embedder": "openai",
            "openai_base_url": "http://127.0.0.1:9/unused-chat-endpoint",
            "openai_api_key": None,
            "openai_embedding_base_url": openai_server.base_url,
            "openai_embedding_api_key": SecretStr("embeddings-key"),
            "openai_embedding_model": "fake-embed",
        }
    )
    container = Container(chosen)
    vectors = await container.embedder.embed_documents(["a calm sea"])
    assert vectors.shape == (1, 16)
    await container.aclose()


# The fake, which retrieval tests rely on to be meaningful.


async def test_fake_embedder_shares_words_and_stems() -> None:
    fake = FakeEmbedder()
    answers, answered, stars = await fake.embed_documents(
        ["Answers of the wise", "He answered wisely", "moons of Jupiter"]
    )

    assert cosine(answers, answered) > 0.6
    assert cosine(answers, stars) < 0.3
    assert np.array_equal(await fake.embed_query("moons of Jupiter"), stars)
    assert fake.calls[-1] == ["moons of Jupiter"]


async def test_fake_embedder_down_raises_provider_error() -> None:
    fake = FakeEmbedder(healthy=False)
    assert not (await fake.check_health()).ok
    with pytest.raises(ProviderError):
        await fake.embed_query("anger")
