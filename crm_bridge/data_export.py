"""What the CRM knows about one customer: a short summary for the chat, and the full
export (JSON-serialisable) they may download.

Both cover the contact and the contacts merged into it (the same person). They read;
they never change anything. An erased contact (``crm_bridge.erasure``) has nothing left
to show and is reported as not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.consent import ALL_CHANNELS, TOPIC_DEFAULTS
from crm_bridge.db import unit_of_work
from crm_bridge.erasure import ERASED_NAME
from crm_bridge.errors import ContactNotFound

EXPORT_FORMAT = "rapport-export/1"


@dataclass(frozen=True)
class LinkedChannel:
    """One channel identity of the customer and how it was proven."""

    channel: str
    proof: str


@dataclass(frozen=True)
class TopicConsent:
    """A topic's state: for every channel (``*``), and channels that differ from it."""

    topic: str
    everywhere: bool
    decided: bool  # False: the topic's default applies
    per_channel: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class ContactSummary:
    """What a customer is told when they ask what we know about them."""

    contact_id: int
    name: str
    email: str | None
    phone: str | None
    customer_since: date
    channels: tuple[LinkedChannel, ...]
    consents: tuple[TopicConsent, ...]
    conversations: int
    orders: int
    tickets: int
    returns: int


def _contact_ids(session: Session, contact_id: int) -> tuple[models.Contact, list[int]]:
    """The contact (not erased) and the ids of the contacts merged into it."""
    contact = session.get(models.Contact, contact_id)
    if contact is None or (contact.name == ERASED_NAME and not (contact.email or contact.phone)):
        raise ContactNotFound(f"No contact {contact_id}.")
    ids = [contact.id]
    while True:
        more = list(
            session.execute(
                select(models.Contact.id).where(
                    models.Contact.merged_into_id.in_(ids), models.Contact.id.notin_(ids)
                )
            ).scalars()
        )
        if not more:
            return contact, ids
        ids.extend(more)


def _count(session: Session, model: Any, ids: Sequence[int]) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(model).where(model.contact_id.in_(ids))
        ).scalar_one()
    )


def _consents(rows: Sequence[models.Consent]) -> tuple[TopicConsent, ...]:
    """Each topic's newest decision for all channels and per channel (rows oldest first)."""
    latest: dict[tuple[str, str], bool] = {}
    for row in rows:
        latest[(row.topic, row.channel)] = bool(row.granted)
    states = []
    for topic, default in TOPIC_DEFAULTS.items():
        everywhere = latest.get((topic, ALL_CHANNELS), default)
        channels = tuple(
            sorted(
                (channel, granted)
                for (name, channel), granted in latest.items()
                if name == topic and channel != ALL_CHANNELS and granted != everywhere
            )
        )
        decided = any(name == topic for name, _ in latest)
        states.append(TopicConsent(topic, everywhere, decided, channels))
    return tuple(states)


def _consent_rows(session: Session, ids: Sequence[int]) -> list[models.Consent]:
    return list(
        session.execute(
            select(models.Consent)
            .where(models.Consent.contact_id.in_(ids))
            .order_by(models.Consent.recorded_at, models.Consent.id)
        ).scalars()
    )


def contact_summary(factory: sessionmaker, contact_id: int) -> ContactSummary:
    """The customer's fields, linked channels with their proof, consent per topic and the
    number of conversations, orders, tickets and returns. ``ContactNotFound`` if none."""
    with unit_of_work(factory) as session:
        contact, ids = _contact_ids(session, contact_id)
        identities = session.execute(
            select(models.ChannelIdentity)
            .where(models.ChannelIdentity.contact_id.in_(ids))
            .order_by(models.ChannelIdentity.channel, models.ChannelIdentity.id)
        ).scalars()
        return ContactSummary(
            contact_id=contact.id,
            name=contact.name,
            email=contact.email,
            phone=contact.phone,
            customer_since=contact.created_at.date(),
            channels=tuple(LinkedChannel(i.channel, i.proof) for i in identities),
            consents=_consents(_consent_rows(session, ids)),
            conversations=_count(session, models.Interaction, ids),
            orders=_count(session, models.Order, ids),
            tickets=_count(session, models.Ticket, ids),
            returns=_count(session, models.ReturnRequest, ids),
        )


def _plain(value: Any) -> Any:
    """A JSON-friendly value: dates and datetimes as ISO 8601."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _row(row: Any, *names: str) -> dict[str, Any]:
    return {name: _plain(getattr(row, name)) for name in names}


def contact_export(factory: sessionmaker, contact_id: int) -> dict[str, Any]:
    """Everything the CRM holds about the customer, as JSON-serialisable data: contact,
    channel identities, orders with items, conversations with their transcript lines,
    tickets, returns, consent decisions and proactive messages."""
    M = models  # short: every query below names a model
    with unit_of_work(factory) as session:
        contact, ids = _contact_ids(session, contact_id)

        def of(model: Any, *order: Any) -> list[Any]:
            return list(
                session.execute(
                    select(model).where(model.contact_id.in_(ids)).order_by(*order)
                ).scalars()
            )

        contacts = [session.get(M.Contact, i) for i in ids]
        interactions = of(M.Interaction, M.Interaction.started_at, M.Interaction.id)
        return {
            "format": EXPORT_FORMAT,
            "exported_at": _plain(M.utcnow()),
            "contact": _row(contact, "id", "name", "email", "phone", "created_at", "updated_at"),
            "merged_contacts": [
                _row(c, "id", "name", "email", "phone", "created_at") for c in contacts[1:] if c
            ],
            "identities": [
                _row(i, "channel", "external_id", "proof", "verified_at")
                for i in of(M.ChannelIdentity, M.ChannelIdentity.id)
            ],
            "orders": [
                {
                    **_row(
                        o,
                        "number",
                        "status",
                        "placed_at",
                        "delivered_at",
                        "expected_delivery",
                        "carrier",
                        "tracking_code",
                    ),
                    "items": [
                        _row(item, "sku", "name", "quantity", "unit_price_cents")
                        for item in o.items
                    ],
                }
                for o in of(M.Order, M.Order.placed_at)
            ],
            "conversations": [
                {
                    **_row(i, "id", "channel", "started_at", "ended_at", "outcome", "summary"),
                    "intents": list(i.intents or []),
                    "messages": [
                        _row(m, "sent_at", "direction", "author", "text", "intent")
                        for m in i.messages
                    ],
                }
                for i in interactions
            ],
            "tickets": [
                {
                    **_row(t, "reference", "category", "subject", "description", "status"),
                    "created_at": _plain(t.created_at),
                    "order": t.order.number if t.order else None,
                }
                for t in of(M.Ticket, M.Ticket.id)
            ],
            "returns": [
                {
                    **_row(r, "reference", "item", "reason", "status", "created_at"),
                    "order": r.order.number if r.order else None,
                }
                for r in of(M.ReturnRequest, M.ReturnRequest.id)
            ],
            "consents": [
                _row(c, "topic", "channel", "granted", "wording", "source", "recorded_at")
                for c in _consent_rows(session, ids)
            ],
            "notifications": [
                _row(n, "topic", "channel", "reference", "text", "status", "created_at", "sent_at")
                for n in of(M.Notification, M.Notification.id)
            ],
        }
