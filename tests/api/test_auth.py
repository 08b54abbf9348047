"""Auth routes, one test per status code, plus forged tokens and rate limits."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.api import create_api
from histora.models import User
from tests.conftest import FakeProvidersContainer
from tests.support import emulator_google_id_token

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
async def fresh_limits(container: FakeProvidersContainer) -> None:
    await container.rate_limiter.reset()


async def _register(http: httpx.AsyncClient, email: str = "ada@example.com") -> httpx.Response:
    return await http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "Ada"},
    )


async def test_register_is_201_with_tokens(anon_client: httpx.AsyncClient) -> None:
    response = await _register(anon_client, "  Ada@Example.COM ")
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["role"] == "user" and body["token_type"] == "bearer"
    me = await anon_client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["email"] == "ada@example.com"


async def test_register_weak_password_is_422(anon_client: httpx.AsyncClient) -> None:
    response = await anon_client.post(
        "/api/v1/auth/register",
        json={"email": "b@example.com", "password": "short", "display_name": "B"},
    )
    assert response.status_code == 422
    assert "password" in response.json()["error"]["message"].lower()


async def test_a_name_with_a_nul_character_is_422(anon_client: httpx.AsyncClient) -> None:
    # PostgreSQL cannot store U+0000 in text: refused up front, on SQLite too.
    response = await anon_client.post(
        "/api/v1/auth/register",
        json={"email": "c@example.com", "password": PASSWORD, "display_name": "Ada\u0000"},
    )
    assert response.status_code == 422
    assert "U+0000" in response.json()["error"]["message"]


async def test_an_unknown_field_is_422_not_ignored(anon_client: httpx.AsyncClient) -> None:
    account = {"email": "u@example.com", "password": PASSWORD, "display_name": "U"}
    response = await anon_client.post("/api/v1/auth/register", json={**account, "role": "admin"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["location"] == ["body", "role"]
    login = {"email": "u@example.com", "password": PASSWORD}
    assert (await anon_client.post("/api/v1/auth/login", json=login)).status_code == 401


async def test_register_duplicate_is_409(anon_client: httpx.AsyncClient) -> None:
    await _register(anon_client)
    assert (await _register(anon_client)).status_code == 409


async def test_login_is_200(anon_client: httpx.AsyncClient) -> None:
    await _register(anon_client)
    response = await anon_client.post(
        "/api/v1/auth/login", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["refresh_token"]


async def test_login_errors_do_not_reveal_accounts(anon_client: httpx.AsyncClient) -> None:
    await _register(anon_client)
    wrong = await anon_client.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "wrong password!"}
    )
    unknown = await anon_client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


async def test_twenty_wrong_passwords_get_429(anon_client: httpx.AsyncClient) -> None:
    await _register(anon_client)
    statuses = []
    for _ in range(20):
        response = await anon_client.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": "nope nope nope"}
        )
        statuses.append(response.status_code)
    assert statuses[0] == 401
    assert statuses[-1] == 429
    assert int(response.headers["retry-after"]) >= 1


async def test_refresh_rotates_and_reuse_revokes_the_family(anon_client: httpx.AsyncClient) -> None:
    first = (await _register(anon_client)).json()["refresh_token"]
    rotated = await anon_client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    reused = await anon_client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": first},
        headers={"user-agent": "a thief's script"},
    )
    assert reused.status_code == 401
    # The reuse revoked the whole family, including the newest token.
    after = await anon_client.post("/api/v1/auth/refresh", json={"refresh_token": second})
    assert after.status_code == 401


async def test_logout_is_204_and_revokes(anon_client: httpx.AsyncClient) -> None:
    token = (await _register(anon_client)).json()["refresh_token"]
    assert (
        await anon_client.post("/api/v1/auth/logout", json={"refresh_token": token})
    ).status_code == 204
    refreshed = await anon_client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert refreshed.status_code == 401


async def test_logout_everywhere_revokes_every_refresh_token(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/auth/logout-all")).status_code == 204


def _forge(settings_secret: str, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "histora", "aud": "histora-api", "sub": "x", "iat": now, "exp": now + 60,
        "jti": "j",
    }  # fmt: skip
    claims.update(overrides)
    return jwt.encode(claims, settings_secret, algorithm="HS256")


@pytest.mark.parametrize("case", ["alg-none", "wrong-key", "expired", "wrong-audience", "garbage"])
async def test_forged_tokens_are_401(
    anon_client: httpx.AsyncClient,
    db: AsyncSession,
    user: User,
    container: FakeProvidersContainer,
    case: str,
) -> None:
    secret = container.settings.signing_secret()
    sub = str(user.id)
    token = {
        "alg-none": jwt.encode(
            {"iss": "histora", "aud": "histora-api", "sub": sub, "exp": time.time() + 60},
            None,
            algorithm="none",
        ),
        "wrong-key": _forge("another-secret-that-is-long-enough-0123456789", sub=sub),
        "expired": _forge(secret, sub=sub, exp=int(time.time()) - 10),
        "wrong-audience": _forge(secret, sub=sub, aud="someone-else"),
        "garbage": "not.a.token",
    }[case]
    response = await anon_client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


async def test_nul_in_a_key_name_or_a_search_is_422(client: httpx.AsyncClient) -> None:
    # PostgreSQL cannot take U+0000 in text, stored or compared.
    created = await client.post("/api/v1/api-keys", json={"name": "my\u0000script"})
    searched = await client.get("/api/v1/characters", params={"q": "so\x00crates"})
    for response in (created, searched):
        assert response.status_code == 422
        assert "U+0000" in response.json()["error"]["message"]
    assert (await client.get("/api/v1/api-keys")).json() == []


async def test_api_keys_create_list_use_and_revoke(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/v1/api-keys", json={"name": "my script"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    key_id = created.json()["key"]["id"]
    listed = (await client.get("/api/v1/api-keys")).json()
    assert [k["name"] for k in listed] == ["my script"]
    assert secret not in str(listed)
    by_key = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/v1/auth/me", headers=by_key)).status_code == 200
    assert (await client.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=by_key)).status_code == 401


async def test_firebase_exchange_off_in_local_mode_is_422(anon_client: httpx.AsyncClient) -> None:
    response = await anon_client.post("/api/v1/auth/firebase", json={"id_token": "x"})
    assert response.status_code == 422


@pytest.mark.firebase
async def test_firebase_exchange_of_a_google_token_is_200_with_tokens(
    firebase_container: FakeProvidersContainer, emulator_host: str
) -> None:
    email = f"grace-{uuid.uuid4().hex[:8]}@example.com"
    id_token = emulator_google_id_token(
        emulator_host, email=email, name="Grace Hopper", google_sub=uuid.uuid4().hex
    )
    api = create_api(firebase_container.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://testserver"
    ) as http:
        response = await http.post("/api/v1/auth/firebase", json={"id_token": id_token})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user"]["email"] == email and body["user"]["display_name"] == "Grace Hopper"
        me = await http.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.status_code == 200 and me.json()["email"] == email
