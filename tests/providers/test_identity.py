"""The identity provider: one contract for the fake and the real Firebase Auth emulator,
the production token check offline (locally minted RS256 tokens), and the emulator guard.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from firebase_admin import _token_gen, _user_mgt, auth

from histora import bootstrap, deps
from histora.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    ProviderError,
    UnauthorizedError,
)
from histora.providers.fakes import FakeIdentityProvider
from histora.providers.identity import (
    BAD_CREDENTIALS,
    FirebaseIdentityProvider,
    IdentityProvider,
    check_emulator_safety,
)
from histora.settings import Settings
from tests.support import EMULATOR_PROJECT, EMULATOR_VARIABLE, free_port

PASSWORD = "correct horse battery"
GUARD_MESSAGE = (
    "FIREBASE_AUTH_EMULATOR_HOST is set for project 'histora-prod': the emulator accepts "
    "unsigned tokens, so it is only allowed for demo- projects. Unset it or use a demo-... "
    "project id."
)


def _settings(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "auth_mode": "firebase",
        "firebase_project_id": EMULATOR_PROJECT,
        "firebase_web_api_key": "demo-web-api-key",
        # Always explicit, so a run inside the emulator does not change what a test means.
        "firebase_auth_emulator_host": None,
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def _new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


# --- One contract, two implementations -------------------------------------------------


@dataclass
class Identity:
    """A provider plus the admin actions a test needs (Firebase does them out of band)."""

    provider: IdentityProvider
    disable: Callable[[str], None]
    revoke: Callable[[str], None]
    # Firebase compares revocation with the token's issue time in whole seconds.
    revocation_settle_seconds: float = 0.0


async def _emulator_identity(host: str, tmp_path: Path) -> AsyncIterator[Identity]:
    provider = FirebaseIdentityProvider(_settings(tmp_path, firebase_auth_emulator_host=host))
    app = provider.app

    def disable(uid: str) -> None:
        auth.update_user(uid, disabled=True, app=app)

    def revoke(uid: str) -> None:
        auth.revoke_refresh_tokens(uid, app=app)

    yield Identity(provider, disable, revoke, revocation_settle_seconds=1.1)
    await provider.aclose()


@pytest.fixture(params=["fake", pytest.param("emulator", marks=pytest.mark.firebase)])
async def identity(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Identity]:
    if request.param == "fake":
        fake = FakeIdentityProvider()
        yield Identity(fake, fake.disable, fake.revoke_tokens)
        return
    host = request.getfixturevalue("emulator_host")
    async for real in _emulator_identity(host, tmp_path):
        yield real


async def test_sign_up_and_sign_in_return_verifiable_tokens(identity: Identity) -> None:
    email = _new_email()
    provider = identity.provider

    signed_up = await provider.verify_id_token(await provider.sign_up(email, PASSWORD, "Ada L"))
    signed_in = await provider.verify_id_token(
        await provider.sign_in_with_password(email, PASSWORD)
    )

    assert signed_up.uid and signed_in.uid == signed_up.uid
    assert signed_in.email == email
    assert signed_in.email_verified is False
    assert signed_in.display_name == "Ada L"


async def test_wrong_password_and_unknown_email_are_refused_alike(identity: Identity) -> None:
    email = _new_email()
    await identity.provider.sign_up(email, PASSWORD, "Ada")

    with pytest.raises(UnauthorizedError) as wrong_password:
        await identity.provider.sign_in_with_password(email, "not the password")
    with pytest.raises(UnauthorizedError) as unknown_email:
        await identity.provider.sign_in_with_password(_new_email(), PASSWORD)

    assert wrong_password.value.public_message == BAD_CREDENTIALS
    assert unknown_email.value.public_message == BAD_CREDENTIALS


async def test_sign_up_with_taken_email_conflicts(identity: Identity) -> None:
    email = _new_email()
    await identity.provider.sign_up(email, PASSWORD, "Ada")

    with pytest.raises(ConflictError):
        await identity.provider.sign_up(email, PASSWORD, "Ada again")


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        (_new_email(), "123", "too weak"),
        ("not-an-email", PASSWORD, "valid email"),
    ],
)
async def test_sign_up_with_weak_password_or_bad_email_is_invalid(
    identity: Identity, email: str, password: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        await identity.provider.sign_up(email, password, "Ada")
    assert message in raised.value.public_message


async def test_token_of_disabled_user_is_refused(identity: Identity) -> None:
    token = await identity.provider.sign_up(_new_email(), PASSWORD, "Ada")
    uid = (await identity.provider.verify_id_token(token)).uid

    await asyncio.to_thread(identity.disable, uid)

    with pytest.raises(UnauthorizedError) as raised:
        await identity.provider.verify_id_token(token)
    assert token not in str(raised.value)


async def test_revoked_token_is_refused_and_a_new_sign_in_works(identity: Identity) -> None:
    email = _new_email()
    token = await identity.provider.sign_up(email, PASSWORD, "Ada")
    uid = (await identity.provider.verify_id_token(token)).uid
    await asyncio.sleep(identity.revocation_settle_seconds)

    await asyncio.to_thread(identity.revoke, uid)

    with pytest.raises(UnauthorizedError):
        await identity.provider.verify_id_token(token)
    await asyncio.sleep(identity.revocation_settle_seconds)
    fresh = await identity.provider.sign_in_with_password(email, PASSWORD)
    assert (await identity.provider.verify_id_token(fresh)).uid == uid


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c"])
async def test_malformed_tokens_are_refused(identity: Identity, token: str) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        await identity.provider.verify_id_token(token)
    assert raised.value.public_message == "Please sign in."


# --- The production path, offline --------------------------------------------------------
#
# firebase-admin checks a real token's RS256 signature against Google's published certs,
# then (check_revoked=True) looks the user up with the Admin API using a service account.
# A loopback server stands in for all three Google endpoints: the cert list, the OAuth
# token endpoint (named by the service account file itself) and accounts:lookup. The
# revocation check therefore runs for real instead of being switched off, and the
# credentials-file path is exercised too. The two URLs firebase-admin hard-codes are
# library constants, patched for these tests only.

PROD_PROJECT = "histora-prod-test"
KID = "test-key-1"


@dataclass
class GoogleStandIn:
    url: str
    # uid -> the Admin API's record fields (disabled, validSince); missing uids are unknown.
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SigningKey:
    key: rsa.RSAPrivateKey
    cert_pem: str


def _signing_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return SigningKey(key, cert.public_bytes(serialization.Encoding.PEM).decode())


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return _signing_key()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return _signing_key()


def _handler(state: GoogleStandIn, cert_pem: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.hits.append(self.path)
            self._reply({KID: cert_pem})

        def do_POST(self) -> None:
            state.hits.append(self.path)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path == "/token":
                self._reply(
                    {"access_token": "stand-in", "expires_in": 3600, "token_type": "Bearer"}
                )
                return
            uids = json.loads(raw).get("localId", [])
            users = [{"localId": uid, **state.users[uid]} for uid in uids if uid in state.users]
            self._reply({"kind": "identitytoolkit#GetAccountInfoResponse", "users": users})

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is not the place for an access log."""

    return Handler


@pytest.fixture
def google(google_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleStandIn]:
    # The emulator variable makes firebase-admin skip signature checks: never here.
    monkeypatch.delenv(EMULATOR_VARIABLE, raising=False)
    state = GoogleStandIn(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, google_key.cert_pem))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval keeps shutdown() from adding half a second to every test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    monkeypatch.setattr(_token_gen, "ID_TOKEN_CERT_URI", f"{state.url}/certs")
    monkeypatch.setattr(_user_mgt.UserManager, "ID_TOOLKIT_URL", f"{state.url}/v1")
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def production(
    google: GoogleStandIn, tmp_path: Path
) -> AsyncIterator[FirebaseIdentityProvider]:
    service_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {
        "type": "service_account",
        "project_id": PROD_PROJECT,
        "private_key_id": "service-key-1",
        "private_key": service_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": f"histora@{PROD_PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{google.url}/token",
    }
    credentials_file = tmp_path / "service-account.json"
    credentials_file.write_text(json.dumps(account))
    provider = FirebaseIdentityProvider(
        _settings(
            tmp_path, firebase_project_id=PROD_PROJECT, firebase_credentials_file=credentials_file
        )
    )
    yield provider
    await provider.aclose()


def _claims(uid: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{PROD_PROJECT}",
        "aud": PROD_PROJECT,
        "sub": uid,
        "user_id": uid,
        "auth_time": now - 60,
        "iat": now - 10,
        "exp": now + 3600,
        "email": "ada@example.com",
        "email_verified": True,
        "name": "Ada Lovelace",
    }
    claims.update(overrides)
    return claims


def _mint(claims: dict[str, Any], key: SigningKey) -> str:
    return jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": KID})


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': KID, 'typ': 'JWT'})}.{part(claims)}."


async def test_production_token_verifies_with_revocation_check(
    production: FirebaseIdentityProvider, google: GoogleStandIn, google_key: SigningKey
) -> None:
    google.users["uid-ada"] = {"email": "ada@example.com", "disabled": False}

    claims = await production.verify_id_token(_mint(_claims("uid-ada"), google_key))

    assert (claims.uid, claims.email, claims.email_verified) == ("uid-ada", "ada@example.com", True)
    assert claims.display_name == "Ada Lovelace"
    # Certs fetched, service account token obtained, user looked up: the full path ran.
    assert google.hits == ["/certs", "/token", f"/v1/projects/{PROD_PROJECT}/accounts:lookup"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda now: {"iat": now - 7200, "exp": now - 3600}, id="expired"),
        pytest.param(lambda now: {"aud": "another-project"}, id="wrong-audience"),
        pytest.param(
            lambda now: {"iss": "https://securetoken.google.com/another-project"},
            id="wrong-issuer",
        ),
        pytest.param(lambda now: {"sub": ""}, id="no-subject"),
    ],
)
async def test_production_refuses_bad_claims(
    production: FirebaseIdentityProvider,
    google: GoogleStandIn,
    google_key: SigningKey,
    bad: Callable[[int], dict[str, Any]],
) -> None:
    google.users["uid-ada"] = {"disabled": False}
    token = _mint(_claims("uid-ada", **bad(int(time.time()))), google_key)

    with pytest.raises(UnauthorizedError):
        await production.verify_id_token(token)


async def test_production_refuses_token_signed_by_another_key(
    production: FirebaseIdentityProvider, google: GoogleStandIn, other_key: SigningKey
) -> None:
    google.users["uid-ada"] = {"disabled": False}
    with pytest.raises(UnauthorizedError):
        await production.verify_id_token(_mint(_claims("uid-ada"), other_key))


async def test_production_refuses_unsigned_token(
    production: FirebaseIdentityProvider, google: GoogleStandIn
) -> None:
    google.users["uid-ada"] = {"disabled": False}
    with pytest.raises(UnauthorizedError):
        await production.verify_id_token(_unsigned(_claims("uid-ada")))


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(lambda now: {"disabled": True}, id="disabled"),
        # Tokens issued before validSince (seconds) are revoked.
        pytest.param(lambda now: {"disabled": False, "validSince": str(now + 5)}, id="revoked"),
        pytest.param(lambda now: None, id="deleted"),
    ],
)
async def test_production_refuses_disabled_revoked_or_deleted_user(
    production: FirebaseIdentityProvider,
    google: GoogleStandIn,
    google_key: SigningKey,
    record: Callable[[int], dict[str, Any] | None],
) -> None:
    user = record(int(time.time()))
    if user is not None:
        google.users["uid-ada"] = user
    with pytest.raises(UnauthorizedError):
        await production.verify_id_token(_mint(_claims("uid-ada"), google_key))


async def test_unreachable_certificates_are_a_provider_error(
    production: FirebaseIdentityProvider, google_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_token_gen, "ID_TOKEN_CERT_URI", f"http://127.0.0.1:{free_port()}/certs")
    with pytest.raises(ProviderError):
        await production.verify_id_token(_mint(_claims("uid-ada"), google_key))


async def test_unreadable_credentials_file_is_a_configuration_error(
    google: GoogleStandIn, google_key: SigningKey, tmp_path: Path
) -> None:
    provider = FirebaseIdentityProvider(
        _settings(
            tmp_path,
            firebase_project_id=PROD_PROJECT,
            firebase_credentials_file=tmp_path / "missing.json",
        )
    )
    try:
        with pytest.raises(ConfigurationError, match="HISTORA_FIREBASE_CREDENTIALS_FILE"):
            await provider.verify_id_token(_mint(_claims("uid-ada"), google_key))
    finally:
        await provider.aclose()


# --- The emulator guard and required settings -----------------------------------------


def test_guard_refuses_emulator_for_non_demo_project(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, firebase_project_id="histora-prod", firebase_auth_emulator_host="127.0.0.1:9099"
    )

    with pytest.raises(ConfigurationError) as raised:
        check_emulator_safety(settings)
    assert str(raised.value) == GUARD_MESSAGE
    with pytest.raises(ConfigurationError, match="only allowed for demo- projects"):
        FirebaseIdentityProvider(settings)


def test_guard_refuses_emulator_without_project(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, auth_mode="local", firebase_project_id=None, firebase_auth_emulator_host="h:1"
    )
    with pytest.raises(ConfigurationError, match="only allowed for demo- projects"):
        check_emulator_safety(settings)


async def test_guard_allows_demo_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Matches what the provider would export, and is restored afterwards either way.
    monkeypatch.setenv(EMULATOR_VARIABLE, "127.0.0.1:9099")
    settings = _settings(tmp_path, firebase_auth_emulator_host="127.0.0.1:9099")

    check_emulator_safety(settings)
    await FirebaseIdentityProvider(settings).aclose()
    check_emulator_safety(_settings(tmp_path, firebase_project_id="histora-prod"))


def test_standard_emulator_variable_is_read_by_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EMULATOR_VARIABLE, "127.0.0.1:9099")
    settings = Settings(_env_file=None, data_dir=tmp_path, firebase_project_id="histora-prod")  # type: ignore[call-arg]

    assert settings.firebase_auth_emulator_host == "127.0.0.1:9099"
    with pytest.raises(ConfigurationError, match="demo- projects"):
        check_emulator_safety(settings)


def test_emulator_variable_differing_from_settings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # firebase-admin would trust the process variable, whatever the settings say.
    monkeypatch.setenv(EMULATOR_VARIABLE, "127.0.0.1:9099")
    settings = _settings(tmp_path, firebase_credentials_file=tmp_path / "key.json")
    with pytest.raises(ConfigurationError, match="differs from the configured emulator host"):
        FirebaseIdentityProvider(settings)


async def test_app_start_refuses_emulator_for_non_demo_project(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, firebase_project_id="histora-prod", firebase_auth_emulator_host="127.0.0.1:9099"
    )
    deps.use_container(deps.Container(settings))
    try:
        with pytest.raises(ConfigurationError, match="demo- projects"):
            await bootstrap.prepare_database()
    finally:
        deps.use_container(None)


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ({"firebase_project_id": None}, "HISTORA_FIREBASE_PROJECT_ID"),
        ({"firebase_web_api_key": None}, "HISTORA_FIREBASE_WEB_API_KEY"),
        ({"firebase_credentials_file": None}, "HISTORA_FIREBASE_CREDENTIALS_FILE"),
    ],
)
def test_missing_firebase_setting_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: dict[str, Any], variable: str
) -> None:
    monkeypatch.delenv(EMULATOR_VARIABLE, raising=False)
    values: dict[str, Any] = {
        "firebase_project_id": "histora-prod",
        "firebase_credentials_file": tmp_path / "key.json",
        **missing,
    }
    with pytest.raises(ConfigurationError, match=variable):
        FirebaseIdentityProvider(_settings(tmp_path, **values))
