"""Password (SOAP ``login()``) and JWT bearer sign-in against the fake Salesforce on
127.0.0.1 (``SALESFORCE_LOGIN_URL``): a write lands with the session signed in for;
refused credentials are an error naming the variables and nothing secret, not asked again
at once; an expired session is renewed once and the write made once; a login outage or
timeout is retried by the outbox."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_bridge.db import session_factory
from crm_bridge.errors import SettingsError
from crm_bridge.outbox import OutboxWorker
from crm_bridge.outbox_admin import status
from crm_bridge.remote.base import EventKind, RemoteRetryable
from crm_bridge.remote.salesforce import SalesforceCrm
from crm_bridge.remote.salesforce_login import (
    REFUSAL_COOL_DOWN,
    SignedIn,
    SignIn,
    SignInRefused,
)
from tests.fakes.salesforce_api import FakeSalesforceApi
from tests.integration.test_hubspot_adapter import ALICE, CONVERSATION, FakeClock, MemoryRefs, event
from tests.integration.test_salesforce_adapter import adapter_for
from tests.integration.test_salesforce_outbox import (
    a_conversation_with_a_ticket,
    counted,
    run_rounds,
)

pytestmark = pytest.mark.integration

USERNAME = "rapport-bot@example.com"
PASSWORD = "s3cret&<pw>"  # XML's special characters: the envelope must escape them
SECURITY_TOKEN = "TOKENabc123"
CONSUMER_KEY = "3MVG9test.consumer.key"
UPSERT = event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The connected app's key and another one (made here: no key ships with the tests)."""
    return tuple(  # type: ignore[return-value]
        rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)
    )


def pem_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "salesforce.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def signing_in(fake: FakeSalesforceApi, **credentials: object) -> dict[str, object]:
    """Settings that sign in at the fake (no session id given)."""
    return {
        "salesforce_access_token": "",
        "salesforce_instance_url": "",
        "salesforce_login_url": fake.root_url,
        "salesforce_username": USERNAME,
        **credentials,
    }


def by_password(fake: FakeSalesforceApi, password: str = PASSWORD) -> dict[str, object]:
    fake.logins.add_user(USERNAME, PASSWORD, SECURITY_TOKEN)
    return signing_in(fake, salesforce_password=password, salesforce_security_token=SECURITY_TOKEN)


def by_jwt(fake: FakeSalesforceApi, tmp_path: Path, keys, signing_key: int = 0) -> dict:
    fake.logins.add_app(CONSUMER_KEY, USERNAME, keys[0].public_key())
    key_file = pem_file(tmp_path, keys[signing_key])
    return signing_in(
        fake, salesforce_consumer_key=CONSUMER_KEY, salesforce_private_key_file=str(key_file)
    )


def login_adapter(
    fake: FakeSalesforceApi, clock: FakeClock, how: str, tmp_path: Path, keys
) -> SalesforceCrm:
    credentials = by_password(fake) if how == "password" else by_jwt(fake, tmp_path, keys)
    return adapter_for(fake, clock, **credentials)


def refused_naming(adapter: SalesforceCrm, code: str, variables: tuple[str, ...]) -> SignInRefused:
    """The refusal a delivery meets, checked to name Salesforce's code and the variables."""
    with pytest.raises(SignInRefused) as caught:
        adapter.deliver(UPSERT, MemoryRefs())
    message = str(caught.value)
    assert code in message and all(name in message for name in variables), message
    return caught.value


def test_a_password_login_then_an_upsert_lands(fake_salesforce, clock) -> None:
    fake = fake_salesforce
    adapter_for(fake, clock, **by_password(fake)).deliver(UPSERT, MemoryRefs())

    assert [c.method for c in fake.calls] == ["password login", "upsert Contact"]
    [login] = fake.routes("password login")
    assert login.params == {"soap_action": "login", "username": USERNAME}
    [contact] = fake.records["Contact"].values()
    assert contact["Rapport_Key__c"] == "contact-1"


def test_a_wrong_password_is_refused_naming_the_variables(fake_salesforce, clock) -> None:
    fake = fake_salesforce
    adapter = adapter_for(fake, clock, **by_password(fake, password="wrong&password"))
    refusal = refused_naming(
        adapter,
        "INVALID_LOGIN",
        ("SALESFORCE_PASSWORD", "SALESFORCE_SECURITY_TOKEN", "SALESFORCE_LOGIN_URL"),
    )
    assert "wrong" not in str(refusal) and SECURITY_TOKEN not in str(refusal)
    assert refusal.retry_after == REFUSAL_COOL_DOWN
    # Every queued event asking again would lock the user out: refused without asking.
    with pytest.raises(SignInRefused, match="INVALID_LOGIN"):
        adapter.deliver(UPSERT, MemoryRefs())
    assert len(fake.routes("password login")) == 1
    assert fake.records["Contact"] == {}


def test_a_refusal_is_asked_again_after_the_cool_down(clock) -> None:
    attempts: list[object] = []

    def refused(session: object) -> SignedIn:
        attempts.append(session)
        raise SignInRefused("Salesforce refused to sign in (INVALID_LOGIN)", "INVALID_LOGIN")

    sign_in = SignIn("password", refused, clock=clock)
    for _ in range(2):
        with pytest.raises(SignInRefused):
            sign_in(None)  # type: ignore[arg-type]
    assert len(attempts) == 1
    clock.sleep(REFUSAL_COOL_DOWN - 1)
    with pytest.raises(SignInRefused) as caught:
        sign_in(None)  # type: ignore[arg-type]
    assert len(attempts) == 1 and caught.value.retry_after == pytest.approx(1.0)
    clock.sleep(1)
    with pytest.raises(SignInRefused):
        sign_in(None)  # type: ignore[arg-type]
    assert len(attempts) == 2


def test_a_jwt_login_then_an_upsert_lands(fake_salesforce, clock, tmp_path, keys) -> None:
    fake = fake_salesforce
    adapter_for(fake, clock, **by_jwt(fake, tmp_path, keys)).deliver(UPSERT, MemoryRefs())

    assert [c.method for c in fake.calls] == ["jwt login", "upsert Contact"]
    [login] = fake.routes("jwt login")
    assert login.params["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert (login.params["iss"], login.params["sub"]) == (CONSUMER_KEY, USERNAME)
    assert login.params["aud"] == fake.root_url
    assert 0 < login.params["exp"] - time.time() <= 180
    assert len(fake.records["Contact"]) == 1


def test_a_wrong_key_is_refused_naming_the_variables(
    fake_salesforce, clock, tmp_path, keys
) -> None:
    fake = fake_salesforce
    adapter = adapter_for(fake, clock, **by_jwt(fake, tmp_path, keys, signing_key=1))
    refusal = refused_naming(
        adapter,
        "invalid_grant: invalid assertion",
        ("SALESFORCE_CONSUMER_KEY", "SALESFORCE_PRIVATE_KEY_FILE", "SALESFORCE_USERNAME"),
    )
    assert "PRIVATE KEY" not in str(refusal) and "eyJ" not in str(refusal)  # key, assertion
    assert fake.records["Contact"] == {}


@pytest.mark.parametrize("how", ["password", "jwt"])
def test_an_expired_session_is_renewed_once_and_the_write_made_once(
    fake_salesforce, clock, tmp_path, keys, how
) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = login_adapter(fake, clock, how, tmp_path, keys)
    adapter.deliver(UPSERT, refs)
    fake.expire_sessions()  # the session timed out between two deliveries
    adapter.deliver(event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION), refs)

    login = f"{how} login"
    assert [c.method for c in fake.calls] == [
        login,
        "upsert Contact",
        "upsert Task",  # 401 INVALID_SESSION_ID
        login,
        "upsert Task",
    ]
    [task] = fake.records["Task"].values()
    assert refs.stored["interaction:42"] == task["Id"]


def test_a_session_refused_again_after_renewal_is_an_error_not_a_loop(
    fake_salesforce, clock
) -> None:
    fake = fake_salesforce
    adapter = adapter_for(fake, clock, **by_password(fake))
    fake.fail_next(401, times=2, route="upsert Contact", code="INVALID_SESSION_ID")
    with pytest.raises(RemoteRetryable, match="401 INVALID_SESSION_ID") as caught:
        adapter.deliver(UPSERT, MemoryRefs())
    assert "SALESFORCE_PASSWORD" in str(caught.value)
    assert [c.method for c in fake.calls] == [
        "password login",
        "upsert Contact",
        "password login",
        "upsert Contact",
    ]


@pytest.mark.parametrize("how", ["password", "jwt"])
def test_a_login_outage_or_timeout_is_transient(
    fake_salesforce, clock, tmp_path, keys, how
) -> None:
    fake = fake_salesforce
    adapter = login_adapter(fake, clock, how, tmp_path, keys)
    route = f"{how} login"
    fake.fail_next(500, route=route)
    with pytest.raises(RemoteRetryable, match="500") as caught:
        adapter.deliver(UPSERT, MemoryRefs())
    assert not isinstance(caught.value, SignInRefused)
    fake.delay_next(1.5, route=route)  # the adapter reads for 0.5 s
    started = time.monotonic()
    with pytest.raises(RemoteRetryable, match="unreachable"):
        adapter.deliver(UPSERT, MemoryRefs())
    assert time.monotonic() - started < 1.4
    adapter.deliver(UPSERT, MemoryRefs())  # no cool-down after an outage: asked again
    assert len(fake.routes(route)) == 3 and len(fake.records["Contact"]) == 1


def test_the_outbox_retries_through_a_login_outage(crm_url: str, fake_salesforce) -> None:
    fake = fake_salesforce
    a_conversation_with_a_ticket(crm_url)
    factory = session_factory(crm_url)
    worker = OutboxWorker(factory, adapter_for(fake, **by_password(fake)))
    fake.fail_next(503, times=50, route="password login")
    worker.run_once()
    assert counted(fake) == [0, 0, 0]
    assert status(factory, "salesforce").counts.get("pending") == 3
    with fake.lock:
        fake._faults.clear()  # the login service is back
    run_rounds(factory, worker, 3)
    assert counted(fake) == [1, 1, 1]
    assert len(fake.routes("password login")) > 1


def test_settings_for_signing_in_are_checked_when_the_adapter_is_built(
    fake_salesforce, tmp_path, keys
) -> None:
    fake = fake_salesforce
    with pytest.raises(SettingsError, match="SALESFORCE_LOGIN_URL must be an https"):
        adapter_for(fake, **{**by_password(fake), "salesforce_login_url": "http://example.com"})
    jwt_settings = by_jwt(fake, tmp_path, keys)
    with pytest.raises(SettingsError, match="SALESFORCE_PRIVATE_KEY_FILE cannot be read"):
        adapter_for(fake, **{**jwt_settings, "salesforce_private_key_file": "/nonexistent.pem"})
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SettingsError, match="not an unencrypted PEM private key"):
        adapter_for(fake, **{**jwt_settings, "salesforce_private_key_file": str(not_a_key)})
