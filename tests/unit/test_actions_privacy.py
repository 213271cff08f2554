"""Customer control in chat: consent decisions, "what do you know about me?" with its
export link, and "delete my data". Real Trackers and CollectingDispatchers, a real
(SQLite) CRM and tracker database, the real domain.yml."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import privacy
from actions.consent import (
    ActionRecordConsent,
    ValidateConsentForm,
    confirmation,
    read_channel,
    read_choice,
    read_topic,
)
from actions.crm import get_gateway, reset_gateway
from actions.privacy import (
    NEED_PROOF,
    ActionEraseMyData,
    ActionShowMyData,
    ValidateDataAccessForm,
    ValidateDataErasureForm,
)
from connectors.web import download_export
from crm_bridge import models
from crm_bridge.consent import ConsentBook
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.interaction_log import InteractionLog
from tests.privacy_scan import scan_sql
from tests.unit.conftest import make_tracker, slot_events, texts
from tests.unit.test_erasure import Customer, seed_customer


@pytest.fixture(autouse=True)
def privacy_env(crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The seeded CRM, a tracker database of our own, no Redis or RabbitMQ."""
    tracker_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    monkeypatch.setenv("TRACKER_DATABASE_URL", tracker_url)
    monkeypatch.setenv("RAPPORT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WEB_CHAT_URL", "https://support.example.test/chat/")
    for name in ("REDIS_URL", "RABBITMQ_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_gateway()
    yield tracker_url
    reset_gateway()


def weakly_linked(sender: str, email: str = "chloe@example.com") -> int:
    """A REST sender linked by an order's number and email only; the contact id."""
    contact = get_gateway().find_contact_by_email(email)
    assert contact is not None
    get_gateway().link_identity("rest", sender, contact.id)
    return contact.id


def in_form(sender: str, form: str, text: str = "x", intent: str = "inform", **kw: Any) -> Tracker:
    return make_tracker(sender=sender, text=text, intent=intent, active_loop=form, **kw)


async def required(validator: Any, tracker: Tracker, domain: dict, form: str) -> list[str]:
    slots = domain["forms"][form]["required_slots"]
    return list(await validator.required_slots(slots, CollectingDispatcher(), tracker, domain))


@pytest.mark.parametrize(
    ("text", "topic", "choice", "channel"),
    [
        ("stop sending me offers", "offers", "out", None),
        ("unsubscribe me from the newsletter", "newsletter", "out", None),
        ("I'd like order updates on Telegram", "order_updates", "in", "telegram"),
        ("no more marketing", "marketing", "out", None),
        ("I don\u2019t want promotions here", "offers", "out", "web"),
        ("sign me up for the newsletter in the web chat", "newsletter", "in", "web"),
        ("I'd like to stop getting deals everywhere", "offers", "out", "*"),
        ("hello", None, None, None),
    ],
)
def test_the_request_is_read_from_the_customers_words(
    text: str, topic: str | None, choice: str | None, channel: str | None
) -> None:
    assert read_topic(text) == topic
    assert read_choice(text) == choice
    assert read_channel(text, "web") == channel


async def test_an_opt_out_from_a_weakly_linked_chat_is_recorded_with_channel_and_wording(
    domain: dict, crm_url: str
) -> None:
    contact_id = weakly_linked("web-out")
    tracker = in_form(
        "web-out", "consent_form", "stop sending me offers on Telegram", "manage_consent"
    )
    assert await required(ValidateConsentForm(), tracker, domain, "consent_form") == [
        "consent_topic",
        "consent_choice",
        "proof_email",
        "proof_code",
    ]  # the choice is not known yet
    events = await ValidateConsentForm().run(CollectingDispatcher(), tracker, domain)
    slots = slot_events(events)
    assert (slots["consent_topic"], slots["consent_choice"]) == ("offers", "out")
    assert slots["consent_channel"] == "telegram"
    assert slots["requested_slot"] is None  # an opt-out asks no proof of a linked chat

    dispatcher = CollectingDispatcher()
    submit = make_tracker(sender="web-out", prior_slots=slots)
    after = slot_events(ActionRecordConsent().run(dispatcher, submit, domain))
    [said] = texts(dispatcher)
    assert said == confirmation("offers", "out", "telegram")
    assert "won't get offers" in said and "on Telegram" in said
    [decision] = ConsentBook(session_factory(crm_url)).history(contact_id)
    assert (decision.topic, decision.channel, decision.granted) == ("offers", "telegram", False)
    assert (decision.wording, decision.source) == (said, "chat")
    assert after["consent_topic"] is None and after["interaction_outcome"] == "resolved_by_bot"


async def test_an_unnamed_channel_opts_out_everywhere_and_a_group_records_each_topic(
    domain: dict, crm_url: str
) -> None:
    contact_id = weakly_linked("web-all")
    slots = {"consent_topic": "marketing", "consent_choice": "out"}
    ActionRecordConsent().run(
        CollectingDispatcher(), make_tracker(sender="web-all", prior_slots=slots), domain
    )
    history = ConsentBook(session_factory(crm_url)).history(contact_id)
    assert [(d.topic, d.channel, d.granted) for d in history] == [
        ("offers", "*", False),
        ("newsletter", "*", False),
    ]


async def test_an_opt_in_needs_a_proof(domain: dict, crm_url: str) -> None:
    contact_id = weakly_linked("web-in")
    slots = {"consent_topic": "offers", "consent_choice": "in"}
    tracker = in_form("web-in", "consent_form", prior_slots=slots)
    assert await required(ValidateConsentForm(), tracker, domain, "consent_form") == [
        "consent_topic",
        "consent_choice",
        "proof_email",
        "proof_code",
    ]
    dispatcher = CollectingDispatcher()
    ActionRecordConsent().run(dispatcher, make_tracker(sender="web-in", prior_slots=slots), domain)
    assert "confirm who you are" in texts(dispatcher)[0]
    assert ConsentBook(session_factory(crm_url)).history(contact_id) == []

    # demo-alice is proven: her opt-in is taken, on the channel she writes from.
    alice = in_form("demo-alice", "consent_form", prior_slots=slots)
    assert await required(ValidateConsentForm(), alice, domain, "consent_form") == [
        "consent_topic",
        "consent_choice",
    ]
    dispatcher = CollectingDispatcher()
    submit = make_tracker(sender="demo-alice", prior_slots=slots)
    ActionRecordConsent().run(dispatcher, submit, domain)
    assert texts(dispatcher)[0].startswith("Done: you'll get offers from Rapport Demo Shop")
    alice_id = get_gateway().find_contact_by_identity("rest", "demo-alice").id  # type: ignore[union-attr]
    [decision] = ConsentBook(session_factory(crm_url)).history(alice_id)
    assert (decision.topic, decision.channel, decision.granted) == ("offers", "rest", True)


async def test_an_unlinked_chat_must_prove_even_to_opt_out(domain: dict) -> None:
    slots = {"consent_topic": "offers", "consent_choice": "out"}
    tracker = in_form("web-stranger", "consent_form", prior_slots=slots)
    assert (await required(ValidateConsentForm(), tracker, domain, "consent_form"))[-2:] == [
        "proof_email",
        "proof_code",
    ]


async def test_the_summary_is_only_for_a_proven_customer(domain: dict) -> None:
    weakly_linked("web-peek")
    tracker = in_form("web-peek", "data_access_form")
    assert await required(ValidateDataAccessForm(), tracker, domain, "data_access_form") == [
        "proof_email",
        "proof_code",
    ]
    dispatcher = CollectingDispatcher()
    ActionShowMyData().run(dispatcher, make_tracker(sender="web-peek"), domain)
    assert texts(dispatcher) == [NEED_PROOF]
    assert "chloe" not in json.dumps(dispatcher.messages).lower()


async def test_a_proven_customer_gets_the_summary_and_a_link_that_works_once(
    domain: dict, crm_url: str, tmp_path: Path
) -> None:
    customer, other = seed_customer(crm_url, tmp_path), seed_customer(crm_url, tmp_path)
    sender = customer.rest_sender  # proven by a deep link in the seed
    tracker = in_form(sender, "data_access_form")
    assert await required(ValidateDataAccessForm(), tracker, domain, "data_access_form") == []

    dispatcher = CollectingDispatcher()
    ActionShowMyData().run(dispatcher, make_tracker(sender=sender), domain)
    summary, link = texts(dispatcher)
    assert customer.email in summary and customer.phone in summary
    assert "1 conversation(s), 1 order(s), 1 ticket(s), 1 return(s)" in summary
    assert "offers: yes" in summary and "newsletter: no (default)" in summary
    assert other.email not in summary
    assert link.startswith("Everything we hold (as a JSON file): https://support.example.test/")
    token = link.split("/chat/export/")[1].split()[0]

    first = await download_export(token)
    assert first.status == 200
    export = json.loads(first.body or b"")
    assert export["contact"]["email"] == customer.email
    assert other.email not in (first.body or b"").decode()
    assert (await download_export(token)).status == 410


def tracker_rows(tracker_url: str, sender: str, count: int) -> None:
    """Rasa's SQL tracker store rows for ``sender`` (what it writes back after a turn)."""
    engine = sa.create_engine(tracker_url)
    events = sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sender_id", sa.String(255)),
        sa.Column("type_name", sa.String(255)),
        sa.Column("timestamp", sa.Float),
        sa.Column("data", sa.Text),
    )
    events.create(engine, checkfirst=True)
    with engine.begin() as connection:
        for n in range(count):
            connection.execute(
                events.insert().values(
                    sender_id=sender, type_name="user", timestamp=float(n), data=f'{{"n": {n}}}'
                )
            )
    engine.dispose()


async def test_declining_the_erasure_deletes_nothing(domain: dict) -> None:
    dispatcher = CollectingDispatcher()
    tracker = in_form("demo-alice", "data_erasure_form", intent="deny")
    slots = ValidateDataErasureForm().validate_erasure_confirmed(False, dispatcher, tracker, domain)
    assert slots == {"requested_slot": None, "erasure_confirmed": False}
    assert texts(dispatcher) == ["OK, I haven't deleted anything."]
    after = make_tracker(sender="demo-alice", prior_slots={"erasure_confirmed": False})
    await ActionEraseMyData().run(CollectingDispatcher(), after, domain)
    assert get_gateway().find_contact_by_identity("rest", "demo-alice", proven=True) is not None


async def test_delete_my_data_erases_then_erases_what_the_turn_wrote_back(
    domain: dict,
    crm_url: str,
    tmp_path: Path,
    privacy_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer, other = seed_customer(crm_url, tmp_path), seed_customer(crm_url, tmp_path)
    tracker_rows(privacy_env, customer.rest_sender, 5)
    tracker_rows(privacy_env, other.rest_sender, 2)
    weak = in_form("web-weak", "data_erasure_form")
    weakly_linked("web-weak")
    assert await required(ValidateDataErasureForm(), weak, domain, "data_erasure_form") == [
        "proof_email",
        "proof_code",
        "erasure_confirmed",
    ]
    monkeypatch.setattr(privacy, "SECOND_PASS_AFTER_SECONDS", (0.3,))

    dispatcher = CollectingDispatcher()
    confirmed = make_tracker(sender=customer.rest_sender, prior_slots={"erasure_confirmed": True})
    events = await ActionEraseMyData().run(dispatcher, confirmed, domain)
    [receipt] = texts(dispatcher)
    assert receipt.startswith("Done: your details") and "erasure #" in receipt
    assert slot_events(events)["erasure_confirmed"] is None
    assert scan_sql(crm_url, customer.needles) == []
    assert scan_sql(privacy_env, [customer.rest_sender]) == []

    # What Rasa does after the action returns: the tracker saved again, the turn logged.
    tracker_rows(privacy_env, customer.rest_sender, 3)
    InteractionLog(session_factory(crm_url)).record_events(customer.events())
    assert scan_sql(crm_url, customer.needles) != []
    await asyncio.gather(*privacy._second_passes)

    assert scan_sql(crm_url, customer.needles) == []
    assert scan_sql(privacy_env, [customer.rest_sender]) == []
    assert_untouched(crm_url, privacy_env, other)


def assert_untouched(crm_url: str, tracker_url: str, other: Customer) -> None:
    with unit_of_work(session_factory(crm_url)) as session:
        contact = session.get(models.Contact, other.contact_id)
        assert (contact.email, contact.phone) == (other.email, other.phone)
    assert scan_sql(tracker_url, [other.rest_sender])
    assert {f.split(": ")[1] for f in scan_sql(crm_url, other.needles)} == set(other.needles)
