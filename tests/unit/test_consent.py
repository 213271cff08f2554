"""Consent per topic and channel: defaults, opt-in and opt-out, '*' and history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.consent import ConsentBook
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import ContactNotFound, InvalidInput

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def book(crm_url: str) -> ConsentBook:
    return ConsentBook(session_factory(crm_url), now=Clock())


@pytest.fixture
def contact_id(crm_url: str) -> int:
    with unit_of_work(session_factory(crm_url)) as session:
        return int(session.execute(select(models.Contact.id).limit(1)).scalar_one())


def test_service_messages_are_on_and_marketing_off_until_the_customer_says(
    book: ConsentBook, contact_id: int
) -> None:
    assert book.state(contact_id, "order_updates", "telegram").allowed
    assert not book.state(contact_id, "offers", "telegram").allowed
    assert not book.state(contact_id, "newsletter", "web").allowed
    assert book.state(contact_id, "offers", "telegram").decided_by is None


def test_the_newest_decision_wins_and_star_covers_every_channel(
    book: ConsentBook, contact_id: int
) -> None:
    book.record(contact_id, "offers", "*", True, "Send me offers? Yes")
    assert book.state(contact_id, "offers", "slack").allowed
    book.record(contact_id, "offers", "slack", False, "stop sending me offers")
    assert not book.state(contact_id, "offers", "slack").allowed
    assert book.state(contact_id, "offers", "telegram").allowed
    book.record(contact_id, "order_updates", "*", False, "no more order updates please")
    state = book.state(contact_id, "order_updates", "web")
    assert not state.allowed and state.decided_by is not None
    assert state.decided_by.wording == "no more order updates please"
    history = book.history(contact_id)
    assert [(d.topic, d.channel, d.granted) for d in history] == [
        ("offers", "*", True),
        ("offers", "slack", False),
        ("order_updates", "*", False),
    ]
    assert history[0].recorded_at < history[1].recorded_at


@pytest.mark.parametrize(
    ("topic", "channel", "wording", "field"),
    [
        ("spam", "web", "ok", "topic"),
        ("offers", "", "ok", "channel"),
        ("offers", "web", " ", "wording"),
    ],
)
def test_bad_decisions_are_refused(
    book: ConsentBook, contact_id: int, topic: str, channel: str, wording: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        book.record(contact_id, topic, channel, True, wording)
    assert refused.value.field == field
    assert book.history(contact_id) == []


def test_an_unknown_contact_is_refused(book: ConsentBook) -> None:
    with pytest.raises(ContactNotFound):
        book.record(999_999, "offers", "web", True, "yes")
