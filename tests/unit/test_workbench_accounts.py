"""Workbench accounts and sessions: Argon2 hashes, the CLI, signed cookies, throttling."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from bot.workbench.security import LoginThrottle, SessionSigner, csrf_matches, load_secret
from crm_bridge import cli, models, users
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, InvalidInput

PASSWORD = "correct horse battery"


def test_an_account_is_stored_hashed_and_checked(crm_url: str) -> None:
    factory = session_factory(crm_url)
    account = users.add_user(factory, "tess", "trainer", PASSWORD)
    assert (account.name, account.role, account.is_admin) == ("tess", "trainer", False)
    with unit_of_work(factory) as session:
        stored = session.execute(select(models.WorkbenchUser.password_hash)).scalar_one()
    assert PASSWORD not in stored and stored.startswith("$argon2id$")
    assert users.authenticate(factory, "tess", PASSWORD) == account
    assert users.authenticate(factory, "tess", PASSWORD + "!") is None
    assert users.authenticate(factory, "nobody", PASSWORD) is None
    users.set_disabled(factory, "tess", True)
    assert users.authenticate(factory, "tess", PASSWORD) is None
    assert users.find_account(factory, account.id) is None


@pytest.mark.parametrize(
    ("name", "role", "password", "field"),
    [
        ("Tess Smith", "trainer", PASSWORD, "name"),
        ("tess", "boss", PASSWORD, "role"),
        ("tess", "trainer", "short", "password"),
    ],
)
def test_bad_accounts_are_refused(
    crm_url: str, name: str, role: str, password: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        users.add_user(session_factory(crm_url), name, role, password)
    assert refused.value.field == field


def test_the_cli_adds_users_without_the_password_in_argv(
    crm_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = cli.main(
        ["--database-url", crm_url, "add-user", "ada", "--role", "admin", "--password-stdin"]
    )
    assert code == 0 and "Added admin ada." in capsys.readouterr().out
    assert users.authenticate(session_factory(crm_url), "ada", PASSWORD) is not None
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["--database-url", crm_url, "add-user", "ada", "--password-stdin"]) == 2
    assert "already a user called ada" in capsys.readouterr().err
    assert cli.main(["--database-url", crm_url, "list-users"]) == 0
    assert "ada" in capsys.readouterr().out
    with pytest.raises(Conflict):
        users.add_user(session_factory(crm_url), "ada", "trainer", PASSWORD)


def test_session_cookies_are_signed_and_expire(tmp_path) -> None:
    secret = load_secret("", tmp_path)
    assert load_secret("", tmp_path) == secret  # kept in var/, not regenerated
    assert (tmp_path / "workbench.secret").stat().st_mode & 0o777 == 0o600
    signer = SessionSigner(secret, lifetime_seconds=60)
    session = signer.new(7)
    cookie = signer.dump(session)
    loaded = signer.load(cookie)
    assert loaded is not None and loaded.account_id == 7 and loaded.csrf == session.csrf
    body, signature = cookie.split(".")
    forged = SessionSigner(b"another key", 60).dump(session)
    assert signer.load(forged) is None
    assert signer.load(body + "." + "0" * len(signature)) is None
    assert signer.load(cookie, now=session.expires_at + 1) is None
    assert csrf_matches(loaded, session.csrf)
    assert not csrf_matches(loaded, "guess") and not csrf_matches(None, session.csrf)


def test_failed_logins_are_throttled_per_address_and_name() -> None:
    throttle = LoginThrottle(limit=3, window=60)
    keys = ["ip:10.0.0.1", "name:tess"]
    for _ in range(3):
        assert throttle.retry_after(keys, now=100) == 0
        throttle.failed(keys, now=100)
    assert 0 < throttle.retry_after(keys, now=101) <= 60
    # Another name from the same address is throttled too; the window passes.
    assert throttle.retry_after(["ip:10.0.0.1", "name:ada"], now=101) > 0
    assert throttle.retry_after(keys, now=161) == 0
