"""Erasure on the CRM (SQLite): one customer seeded through the real writers, erased,
then every table scanned for them while another customer stays whole."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_bridge import cli, models
from crm_bridge.consent import ConsentBook
from crm_bridge.conversation_stores import (
    DEDUPE_PATTERNS,
    LOCK_KEY,
    TRACKER_KEY,
    WEB_INBOX_KEY,
    NotConfigured,
    StoreReport,
    Subject,
    stores_from_settings,
)
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.erasure import ERASED_NAME, ErasureIncomplete, erase_contact
from crm_bridge.errors import ContactNotFound, Unavailable
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.handoff import HandoffDesk, HandoffReason
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.link_tokens import LinkTokens
from crm_bridge.mailer import OutboxMailer
from crm_bridge.one_time_codes import OneTimeCodes
from crm_bridge.settings import load as load_crm_settings
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.privacy_scan import scan_sql

SECRET = b"s" * 32
PROJECT = Path(__file__).resolve().parents[2]


def session_start(sender: str, ts: float) -> list[dict]:
    """A session start as Rasa's broker publishes it."""
    return [
        {
            "sender_id": sender,
            "event": "action",
            "timestamp": ts - 0.001,
            "name": "action_session_start",
        },
        {"sender_id": sender, "event": "session_started", "timestamp": ts},
    ]


def user(sender: str, ts: float, text: str, intent: str) -> dict:
    """A customer's message as Rasa's broker publishes it."""
    return {
        "sender_id": sender,
        "event": "user",
        "timestamp": ts,
        "text": text,
        "input_channel": "rest",
        "parse_data": {"intent": {"name": intent, "confidence": 0.9}, "entities": []},
    }


def bot(sender: str, ts: float, text: str) -> dict:
    """The bot's reply as Rasa's broker publishes it."""
    return {"sender_id": sender, "event": "bot", "timestamp": ts, "text": text}


@dataclass(frozen=True)
class Customer:
    """A seeded customer and every identifier of theirs a store may hold."""

    contact_id: int
    name: str
    email: str
    phone: str
    rest_sender: str
    telegram_sender: str
    words: str  # something only this customer wrote
    started_at: float

    @property
    def needles(self) -> list[str]:
        return [
            self.name,
            self.email,
            self.phone,
            self.rest_sender,
            self.telegram_sender,
            self.words,
        ]

    def events(self) -> list[dict]:
        """A conversation as Rasa publishes it (customer's words, email and phone in it)."""
        t0, sender = self.started_at, self.rest_sender
        return [
            *session_start(sender, t0),
            user(sender, t0 + 1, f"hi, {self.words}", "greet"),
            bot(sender, t0 + 1.1, f"Hello {self.name}!"),
            user(sender, t0 + 2, f"mail me at {self.email} or {self.phone}", "inform"),
        ]


def seed_customer(
    url: str, outbox: Path, started_at: float | None = None, order_number: str | None = None
) -> Customer:
    """A new contact with an order, two channel identities, a conversation, a ticket, a
    return, a handoff, codes, link tokens, a consent and a notification."""
    tag = uuid.uuid4().hex[:8]
    digits = str(int(tag, 16) % 10**6).zfill(6)
    customer = Customer(
        contact_id=0,
        name=f"Quinta Zephyr{tag}",
        email=f"quinta.{tag}@example.org",
        phone=f"+447700{digits}",
        rest_sender=f"web-{tag}",
        telegram_sender=f"9{digits}{tag[:3]}",
        words=f"parcel-{tag}-lost",
        started_at=started_at or datetime.now(timezone.utc).timestamp() - 3600,
    )
    factory = session_factory(url)
    now = datetime.now(timezone.utc)
    number = order_number or digits[:5].replace("0", "7")
    with unit_of_work(factory) as session:
        contact = models.Contact(name=customer.name, email=customer.email, phone=customer.phone)
        session.add(contact)
        session.flush()
        order = models.Order(
            number=number,
            contact_id=contact.id,
            status="delivered",
            placed_at=now - timedelta(days=5),
            delivered_at=now - timedelta(days=2),
        )
        session.add(order)
        session.flush()
        session.add(
            models.OrderItem(order_id=order.id, sku="JKT", name="Rain Jacket", unit_price_cents=1)
        )
        contact_id = contact.id
    customer = Customer(**{**customer.__dict__, "contact_id": contact_id})
    gateway = SqlCrmGateway(factory)
    ref = ConversationRef(
        sender_id=customer.rest_sender, channel="rest", session_started_at=customer.started_at
    )
    gateway.link_identity("rest", customer.rest_sender, contact_id, ref)
    gateway.link_identity("telegram", customer.telegram_sender, contact_id)
    InteractionLog(factory).record_events(customer.events())
    ticket = gateway.open_ticket(
        ref,
        TicketCategory.COMPLAINT,
        f"About {customer.words}",
        f"I said {customer.words}",
        contact_id,
        number,
    )
    gateway.create_return(ref, contact_id, number, "Rain Jacket", f"it is {customer.words}")
    HandoffDesk(factory).request(ref, HandoffReason.CUSTOMER_REQUEST, ticket.id)
    OneTimeCodes(factory, OutboxMailer(outbox), SECRET).send(
        contact_id, "telegram", customer.telegram_sender
    )
    tokens = LinkTokens(factory, SECRET)
    tokens.issue(contact_id)
    tokens.redeem(tokens.issue(contact_id), "rest", customer.rest_sender)
    ConsentBook(factory).record(contact_id, "offers", "*", True, f"Offers for {customer.name}")
    with unit_of_work(factory) as session:
        session.add(
            models.Notification(
                contact_id=contact_id,
                topic="order_updates",
                channel="telegram",
                external_id=customer.telegram_sender,
                reference=f"order:{number}:shipped",
                text=f"Hi {customer.name}, your order shipped.",
            )
        )
    return customer


def erase(url: str, contact: int | str, stores: list = []) -> object:  # noqa: B006
    return asyncio.run(erase_contact(session_factory(url), contact, "tester", SECRET, stores))


def test_every_trace_of_the_customer_goes_and_the_other_stays(crm_url: str, tmp_path) -> None:
    erased, kept = seed_customer(crm_url, tmp_path), seed_customer(crm_url, tmp_path)
    assert scan_sql(crm_url, erased.needles)  # the scan does find them before

    receipt = erase(crm_url, erased.email)

    assert scan_sql(crm_url, erased.needles) == []
    found = scan_sql(crm_url, kept.needles)
    assert {needle for needle in kept.needles if any(f.endswith(needle) for f in found)} == set(
        kept.needles
    )
    crm = dict((r.store, r.removed) for r in receipt.stores)["crm"]  # type: ignore[attr-defined]
    assert crm["interactions"] == 1 and crm["transcript lines"] == 3
    assert crm["identities"] == 2 and crm["handoffs"] == 1 and crm["consents"] == 1
    assert crm["tickets anonymised"] == 1 and crm["returns anonymised"] == 1
    assert crm["one-time codes"] == 1 and crm["link tokens"] == 2 and crm["notifications"] == 1
    with session_factory(crm_url)() as session:
        contact = session.get(models.Contact, erased.contact_id)
        assert (contact.name, contact.email, contact.phone) == (ERASED_NAME, None, None)
        orders = session.execute(
            select(models.Order).where(models.Order.contact_id == erased.contact_id)
        ).scalars()
        assert len(list(orders)) == 1  # the business keeps the order, anonymously
        ticket = session.execute(select(models.Ticket).where(models.Ticket.order_id.is_not(None)))
        assert {t.contact_id for t in ticket.scalars()} == {None, kept.contact_id}


def test_the_erasure_record_keeps_a_keyed_hash_and_counts_only(crm_url: str, tmp_path) -> None:
    customer = seed_customer(crm_url, tmp_path)
    receipt = erase(crm_url, str(customer.contact_id))
    with session_factory(crm_url)() as session:
        record = session.execute(select(models.Erasure)).scalar_one()
    expected = hmac.new(SECRET, customer.email.encode(), hashlib.sha256).hexdigest()
    assert record.subject_hash == expected == receipt.subject_hash  # type: ignore[attr-defined]
    assert record.actor == "tester"
    assert record.receipt["crm"]["removed"]["interactions"] == 1
    assert scan_sql(crm_url, customer.needles) == []


def test_erasing_again_removes_nothing_more(crm_url: str, tmp_path) -> None:
    customer = seed_customer(crm_url, tmp_path)
    erase(crm_url, customer.email)
    again = erase(crm_url, customer.contact_id)
    crm = again.stores[-1].removed  # type: ignore[attr-defined]
    assert {k: v for k, v in crm.items() if v} == {}
    with pytest.raises(ContactNotFound):
        erase(crm_url, customer.email)  # the address is gone from the CRM


def test_a_customer_quoting_the_email_elsewhere_is_redacted_there(crm_url, tmp_path) -> None:
    customer = seed_customer(crm_url, tmp_path)
    stranger = f"anon-{uuid.uuid4().hex[:6]}"
    InteractionLog(crm_url).record_events(
        [
            *session_start(stranger, 1_700_000_000.0),
            user(stranger, 1_700_000_001.0, f"is {customer.email.upper()} mine?", "inform"),
        ]
    )
    erase(crm_url, customer.email)
    assert scan_sql(crm_url, customer.needles) == []
    assert scan_sql(crm_url, [stranger])  # the stranger's conversation stays


class Failing:
    name = "redis"

    async def erase(self, subject: Subject) -> StoreReport:
        raise Unavailable("Redis did not answer")


def test_a_failing_store_leaves_the_crm_untouched(crm_url: str, tmp_path) -> None:
    customer = seed_customer(crm_url, tmp_path)
    with pytest.raises(ErasureIncomplete) as raised:
        erase(crm_url, customer.email, [NotConfigured("tracker (sql)"), Failing()])
    assert [r.line() for r in raised.value.reports] == ["tracker (sql): not configured"]
    assert len(scan_sql(crm_url, [customer.email])) > 1


def test_unknown_contact(crm_url: str) -> None:
    with pytest.raises(ContactNotFound):
        erase(crm_url, "nobody@example.com")


def test_stores_from_empty_settings_are_not_configured(tmp_path) -> None:
    crm = load_crm_settings({"RAPPORT_VAR_DIR": str(tmp_path)})
    stores = stores_from_settings(crm)
    assert [s.name for s in stores] == ["tracker (sql)", "redis", "rabbitmq", "outbox"]
    subject = Subject(1, frozenset({1}), "x", frozenset({"s"}))
    lines = [asyncio.run(s.erase(subject)).line() for s in stores]
    assert lines == [
        "tracker (sql): no events table",  # the default SQLite file does not exist yet
        "redis: not configured",
        "rabbitmq: not configured",
        "outbox: emails 0",
    ]
    assert not (tmp_path / "rasa_tracker.db").exists()


def test_cli_erase_prints_one_line_per_store(crm_url, tmp_path, monkeypatch, capsys) -> None:
    for name in ("REDIS_URL", "RABBITMQ_URL", "TRACKER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAPPORT_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("IDENTITY_SECRET", "i" * 32)
    customer = seed_customer(crm_url, tmp_path / "outbox")
    kept = seed_customer(crm_url, tmp_path / "outbox")
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2  # the one-time codes' emails
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert cli.main(["--database-url", crm_url, "erase", customer.email]) == 1
    assert scan_sql(crm_url, [customer.email])

    code = cli.main(["--database-url", crm_url, "erase", customer.email, "--yes", "--actor", "ops"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("Erasure #1 by ops at ")
    assert [line.split(":")[0].strip() for line in out[1:]] == [
        "tracker (sql)",
        "redis",
        "rabbitmq",
        "outbox",
        "crm",
    ]
    assert "interactions 1" in out[-1] and customer.email not in "\n".join(out)
    assert out[4] == "  outbox: emails 1"
    [left] = (tmp_path / "outbox").glob("*.eml")
    assert kept.email in left.read_text()
    assert scan_sql(crm_url, customer.needles) == []


def test_key_patterns_match_what_the_connectors_write() -> None:
    from bot.web_inbox import WebInbox
    from connectors.dedupe import Deduplicator

    sources = {
        name: (PROJECT / "connectors" / name).read_text()
        for name in ("web.py", "telegram.py", "slack.py")
    }
    inbox_namespace = re.search(r'WebInbox\(.*?"([^"]+)"\)', sources["web.py"])
    assert inbox_namespace is not None
    assert WebInbox(namespace=inbox_namespace.group(1))._key("s-1") == WEB_INBOX_KEY.format(
        sender="s-1"
    )
    dedupe_namespaces = [
        match.group(1)
        for name in ("telegram.py", "slack.py")
        for match in re.finditer(r'Deduplicator\(.*?"([^"]+)"\)', sources[name])
    ]
    assert [f"{n}:*" for n in dedupe_namespaces] == list(DEDUPE_PATTERNS)
    written: list[str] = []

    class Recorder:
        async def set(self, key: str, *args: object, **kwargs: object) -> bool:
            written.append(key)
            return True

    dedupe = Deduplicator("redis://unused", dedupe_namespaces[0])
    dedupe._redis = Recorder()
    asyncio.run(dedupe.first_time("42"))
    assert written == [DEDUPE_PATTERNS[0].replace("*", "42")]
    stores = (PROJECT / "bot" / "stores.py").read_text()
    assert (
        stores.count('key_prefix="rapport"') == 1
        and 'kwargs.get("key_prefix", "rapport")' in stores
    )
    from rasa.core.lock_store import DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX
    from rasa.core.tracker_store import DEFAULT_REDIS_TRACKER_STORE_KEY_PREFIX

    assert f"rapport:{DEFAULT_REDIS_TRACKER_STORE_KEY_PREFIX}{{sender}}" == TRACKER_KEY
    assert f"rapport:{DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX}{{sender}}" == LOCK_KEY
