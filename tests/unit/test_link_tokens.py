"""Deep-link tokens made from the CRM: a channel identity proves which contact it is."""

from __future__ import annotations

import re
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.cli import main
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import ContactNotFound, InvalidInput
from crm_bridge.link_tokens import LinkTokens, identity_secret
from crm_bridge.settings import CrmSettings, SettingsError
from crm_bridge.sql_gateway import SqlCrmGateway

SECRET = b"k" * 32
ALICE = 1  # alice@example.com, linked to rest:demo-alice by the seed


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(crm_url: str, clock: Clock) -> LinkTokens:
    return LinkTokens(session_factory(crm_url), SECRET, now=clock)


def refusal(tokens: LinkTokens, token: str, channel: str = "telegram", ext: str = "42") -> str:
    with pytest.raises(InvalidInput) as caught:
        tokens.redeem(token, channel, ext)
    assert caught.value.field == "token"
    return caught.value.message


def rows(crm_url: str) -> list[models.LinkToken]:
    with unit_of_work(session_factory(crm_url)) as session:
        return list(session.execute(select(models.LinkToken)).scalars())


def test_issue_and_redeem_links_the_identity(
    tokens: LinkTokens, crm_url: str, clock: Clock
) -> None:
    gateway = SqlCrmGateway.from_url(crm_url)
    assert gateway.find_contact_by_identity("telegram", "42") is None
    token = tokens.issue(ALICE)
    clock.now += timedelta(hours=1)
    assert tokens.redeem(token, "telegram", "42") == ALICE

    contact = gateway.find_contact_by_identity("telegram", "42")
    assert contact is not None and contact.email == "alice@example.com"
    with unit_of_work(session_factory(crm_url)) as session:
        identity = session.execute(
            select(models.ChannelIdentity).where(models.ChannelIdentity.external_id == "42")
        ).scalar_one()
        assert identity.verified_at == clock.now
    [row] = rows(crm_url)
    assert row.used_at == clock.now and row.used_by == "telegram:42"

    assert refusal(tokens, token) == "This link was already used."
    assert refusal(tokens, token, ext="43") == "This link was already used."


def test_redeem_moves_an_existing_identity_and_verifies_it(
    tokens: LinkTokens, crm_url: str, clock: Clock
) -> None:
    other = tokens.issue(2)
    clock.now += timedelta(minutes=5)
    assert tokens.redeem(other, "rest", "demo-alice") == 2
    contact = SqlCrmGateway.from_url(crm_url).find_contact_by_identity("rest", "demo-alice")
    assert contact is not None and contact.id == 2


def test_expired_token_is_refused(tokens: LinkTokens, clock: Clock) -> None:
    token = tokens.issue(ALICE, ttl=timedelta(hours=2))
    clock.now += timedelta(hours=2)
    assert refusal(tokens, token) == "This link has expired; ask for a new one."


def test_forged_and_malformed_tokens_are_refused(tokens: LinkTokens, crm_url: str) -> None:
    token = tokens.issue(ALICE)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    other_key = LinkTokens(session_factory(crm_url), b"x" * 32).issue(ALICE)
    for bad in (flipped, other_key, token[:-1], token + "A", "", "a" * 44, token[:43] + "."):
        assert refusal(tokens, bad) == "This link is not valid."
    # A well-signed token the database never saw (another environment, a wiped CRM).
    with unit_of_work(session_factory(crm_url)) as session:
        session.execute(models.LinkToken.__table__.delete())
    assert refusal(tokens, token) == "This link is not valid."


def test_token_fits_telegram_start_payload(tokens: LinkTokens) -> None:
    issued = {tokens.issue(ALICE) for _ in range(20)}
    assert len(issued) == 20
    for token in issued:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token)


def test_only_the_hash_is_stored(tokens: LinkTokens, crm_url: str) -> None:
    token = tokens.issue(ALICE)
    [row] = rows(crm_url)
    assert re.fullmatch(r"[0-9a-f]{64}", row.token_hash)
    with unit_of_work(session_factory(crm_url)) as session:
        table = models.LinkToken.__table__
        values = [str(v) for r in session.execute(select(table)).all() for v in r]
    for value in values:
        assert token[:22] not in value and token[22:] not in value


def test_issue_checks_contact_and_ttl(tokens: LinkTokens) -> None:
    with pytest.raises(ContactNotFound):
        tokens.issue(424242)
    for ttl in (timedelta(0), timedelta(days=31)):
        with pytest.raises(InvalidInput):
            tokens.issue(ALICE, ttl=ttl)


def test_two_concurrent_redeems_one_wins(tokens: LinkTokens, crm_url: str) -> None:
    token = tokens.issue(ALICE)
    start = threading.Barrier(4)
    results: list[object] = []

    def redeem(ext: str) -> None:
        start.wait()
        try:
            results.append(tokens.redeem(token, "telegram", ext))
        except InvalidInput as error:
            results.append(error.message)

    threads = [threading.Thread(target=redeem, args=(f"user-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results, key=str) == [ALICE] + ["This link was already used."] * 3
    [row] = rows(crm_url)
    gateway = SqlCrmGateway.from_url(crm_url)
    linked = [n for n in range(4) if gateway.find_contact_by_identity("telegram", f"user-{n}")]
    assert len(linked) == 1 and row.used_by == f"telegram:user-{linked[0]}"


def test_identity_secret_is_created_once_private(tmp_path: Path) -> None:
    settings = CrmSettings(var_dir=tmp_path / "var")
    first = identity_secret(settings)
    assert len(first) >= 32 and identity_secret(settings) == first
    path = tmp_path / "var" / "identity.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    configured = CrmSettings(var_dir=tmp_path, identity_secret="s" * 40)
    assert identity_secret(configured) == b"s" * 40
    with pytest.raises(SettingsError):
        identity_secret(CrmSettings(var_dir=tmp_path, identity_secret="short"))


def test_cli_prints_a_token_that_redeems(
    crm_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAPPORT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("IDENTITY_SECRET", raising=False)
    argv = ["--database-url", crm_url, "link-token", "rest:demo-alice", "--hours", "2"]
    argv += ["--telegram-bot", "RapportBot", "--web-url", "https://shop.example/chat"]
    assert main(argv) == 0
    token, telegram, web = capsys.readouterr().out.split()
    assert telegram == f"https://t.me/RapportBot?start={token}"
    assert web == f"https://shop.example/chat?link={token}"
    secret = identity_secret(CrmSettings(var_dir=tmp_path / "var"))
    assert LinkTokens(session_factory(crm_url), secret).redeem(token, "telegram", "7") == ALICE
    [row] = rows(crm_url)
    assert row.expires_at - row.created_at == timedelta(hours=2)

    assert main(["--database-url", crm_url, "link-token", "nobody@example.com"]) == 1
    assert "No contact" in capsys.readouterr().err
