"""Emailed one-time codes on a real SQLite CRM, mailed through a real SMTP server."""

from __future__ import annotations

import email
import hashlib
import logging
import re
import socket
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text

from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, Unavailable
from crm_bridge.mailer import (
    MailUnavailable,
    OutboxMailer,
    SmtpMailer,
    mailer_from_settings,
)
from crm_bridge.one_time_codes import OneTimeCodes
from crm_bridge.settings import CrmSettings

SECRET = b"k" * 32  # the identity secret (IDENTITY_SECRET) of these tests

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ALICE = "alice@example.com"
WEB = ("rest", "web-visitor-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Collector:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def last_code(self) -> str:
        body = self.messages[-1].get_content()
        found = re.search(r"\b(\d{6})\b", body)
        assert found, body
        return found.group(1)


@pytest.fixture
def smtp() -> Iterator[tuple[Collector, int]]:
    collector, port = Collector(), free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def codes(crm_url: str, smtp: tuple[Collector, int], clock: Clock) -> OneTimeCodes:
    mailer = SmtpMailer("127.0.0.1", smtp[1], "", "", False, "Rapport <no-reply@localhost>")
    return OneTimeCodes(session_factory(crm_url), mailer, SECRET, now=clock)


@pytest.fixture
def alice(crm_url: str) -> int:
    with unit_of_work(session_factory(crm_url)) as session:
        query = select(models.Contact.id).where(models.Contact.email == ALICE)
        return int(session.execute(query).scalar_one())


def test_the_right_code_proves_the_contact_once(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int
) -> None:
    codes.send(alice, *WEB)
    message = smtp[0].messages[-1]
    assert message["To"] == ALICE and "Rapport" in message["Subject"]
    assert "expires in 10 minutes" in message.get_content()
    code = smtp[0].last_code()

    assert codes.verify(*WEB, f" {code[:3]} {code[3:]} ") == alice
    with pytest.raises(InvalidInput, match="Ask for a code first"):
        codes.verify(*WEB, code)


def test_a_wrong_code_says_how_many_tries_are_left(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int
) -> None:
    codes.send(alice, *WEB)
    wrong = f"{(int(smtp[0].last_code()) + 1) % 1_000_000:06d}"
    with pytest.raises(InvalidInput, match="not right; 4 tries left") as refused:
        codes.verify(*WEB, wrong)
    assert refused.value.field == "code"
    with pytest.raises(InvalidInput, match="3 tries left"):
        codes.verify(*WEB, wrong)
    with pytest.raises(InvalidInput, match="6 digits"):  # a typo costs no try
        codes.verify(*WEB, "12345")
    assert codes.verify(*WEB, smtp[0].last_code()) == alice


def test_five_wrong_codes_lock_the_identity_even_for_the_right_code(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int, clock: Clock
) -> None:
    codes.send(alice, *WEB)
    code = smtp[0].last_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(4):
        with pytest.raises(InvalidInput):
            codes.verify(*WEB, wrong)
    with pytest.raises(Conflict, match="Too many wrong codes; try again in 15 minutes"):
        codes.verify(*WEB, wrong)
    with pytest.raises(Conflict, match="Too many wrong codes"):
        codes.verify(*WEB, code)
    with pytest.raises(Conflict, match="Too many wrong codes"):
        codes.send(alice, *WEB)

    clock.advance(minutes=16)
    codes.send(alice, *WEB)
    assert codes.verify(*WEB, smtp[0].last_code()) == alice


def test_new_codes_do_not_reset_the_wrong_tries(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int
) -> None:
    codes.send(alice, *WEB)
    wrong = f"{(int(smtp[0].last_code()) + 1) % 1_000_000:06d}"
    for _ in range(3):
        with pytest.raises(InvalidInput):
            codes.verify(*WEB, wrong)
    codes.send(alice, *WEB)
    wrong = f"{(int(smtp[0].last_code()) + 1) % 1_000_000:06d}"
    with pytest.raises(InvalidInput, match="1 try left"):
        codes.verify(*WEB, wrong)


def test_an_expired_code_is_refused(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int, clock: Clock
) -> None:
    codes.send(alice, *WEB)
    clock.advance(minutes=10, seconds=1)
    with pytest.raises(InvalidInput, match="That code has expired; ask for a new one"):
        codes.verify(*WEB, smtp[0].last_code())


def test_a_new_code_ends_the_earlier_one(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int, clock: Clock
) -> None:
    codes.send(alice, *WEB)
    first = smtp[0].last_code()
    clock.advance(seconds=30)
    codes.send(alice, *WEB)
    second = smtp[0].last_code()
    if first != second:  # one chance in a million that both are the same
        with pytest.raises(InvalidInput, match="not right"):
            codes.verify(*WEB, first)
    assert codes.verify(*WEB, second) == alice


def test_three_codes_per_ten_minutes(
    codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int, clock: Clock
) -> None:
    for _ in range(3):
        codes.send(alice, *WEB)
        clock.advance(minutes=1)
    with pytest.raises(Conflict, match="wait before asking for another code"):
        codes.send(alice, *WEB)
    assert len(smtp[0].messages) == 3
    codes.send(alice, "telegram", "42")  # another identity has its own allowance
    clock.advance(minutes=8)
    codes.send(alice, *WEB)


def test_a_contact_without_email_gets_no_code(crm_url: str, codes: OneTimeCodes) -> None:
    with unit_of_work(session_factory(crm_url)) as session:
        contact = models.Contact(name="No Mail", email=None)
        session.add(contact)
        session.flush()
        contact_id = int(contact.id)
    with pytest.raises(InvalidInput) as refused:
        codes.send(contact_id, *WEB)
    assert refused.value.field == "email"


def test_only_a_hash_of_the_code_is_stored(
    crm_url: str, codes: OneTimeCodes, smtp: tuple[Collector, int], alice: int
) -> None:
    codes.send(alice, *WEB)
    code = smtp[0].last_code()
    with unit_of_work(session_factory(crm_url)) as session:
        rows = session.execute(text("SELECT * FROM one_time_codes")).all()
    assert len(rows) == 1
    assert code not in repr(rows)
    # A keyed hash (HMAC-SHA256): without the secret, the code cannot be found from it.
    assert len(rows[0].code_hash) == 64
    unkeyed = hashlib.sha256(code.encode()).hexdigest()
    assert rows[0].code_hash != unkeyed


def test_the_outbox_holds_a_private_readable_eml(crm_url: str, tmp_path: Path, alice: int) -> None:
    outbox = tmp_path / "var" / "outbox"
    mailer = mailer_from_settings(CrmSettings(var_dir=tmp_path / "var"))
    assert isinstance(mailer, OutboxMailer) and mailer.folder == outbox
    OneTimeCodes(session_factory(crm_url), mailer, SECRET).send(alice, *WEB)

    files = list(outbox.iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml"  # no temporary file left behind
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    message = email.message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert isinstance(message, EmailMessage)
    assert message["To"] == ALICE and message["Message-ID"] and message["Date"]
    assert re.search(r"Your Rapport code is \d{6}\.", message.get_content())


def test_smtp_settings_pick_the_smtp_mailer() -> None:
    mailer = mailer_from_settings(CrmSettings(smtp_host="mail.example", smtp_password="pw-1"))
    assert isinstance(mailer, SmtpMailer) and "pw-1" not in repr(mailer)


def test_an_unreachable_mail_server_is_unavailable_without_secrets(
    crm_url: str, alice: int, clock: Clock
) -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), "bot", "s3cret-pw", False, "r@localhost", 2)
    codes = OneTimeCodes(session_factory(crm_url), mailer, SECRET, now=clock)
    with pytest.raises(MailUnavailable) as refused:
        codes.send(alice, *WEB)
    assert isinstance(refused.value, Unavailable)
    assert refused.value.__cause__ is None
    for secret in ("s3cret-pw", ALICE, "Your Rapport code"):
        assert secret not in str(refused.value)
    # The withdrawn code neither works nor uses up the allowance.
    with unit_of_work(session_factory(crm_url)) as session:
        assert session.execute(text("SELECT count(*) FROM one_time_codes")).scalar_one() == 0


def test_starttls_refused_by_the_server_is_unavailable(
    smtp: tuple[Collector, int],
) -> None:
    mailer = SmtpMailer("127.0.0.1", smtp[1], "", "", True, "r@localhost", 5)
    with pytest.raises(MailUnavailable, match="SMTPNotSupportedError"):
        mailer.send(ALICE, "subject", "body")
    assert smtp[0].messages == []


def test_logs_never_hold_the_code_or_the_address(
    codes: OneTimeCodes,
    smtp: tuple[Collector, int],
    alice: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="crm_bridge")
    codes.send(alice, *WEB)
    code = smtp[0].last_code()
    with pytest.raises(InvalidInput):
        codes.verify(*WEB, f"{(int(code) + 1) % 1_000_000:06d}")
    codes.verify(*WEB, code)
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("crm")]
    assert f"sent a one-time code to contact {alice}" in ours
    for line in ours:
        assert code not in line and ALICE not in line
