"""What each local write puts in the outbox for the remote CRM (``CRM_BACKEND``).

Called by the SQL gateway and the interaction log inside their unit of work; each
function does nothing when the backend is ``sql``. A payload carries everything the
remote record needs (the contact's name, email, phone and channel identities travel
with every event), so delivering it needs no read of our database, which may by then
have changed or be down.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.outbox import mirrors, record
from crm_bridge.remote.base import EventKind


def iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 text (None stays None)."""
    return value.isoformat() if value else None


def contact_payload(session: Session, contact_id: int) -> dict[str, Any]:
    """The contact as a remote contact record needs it."""
    session.flush()  # identities linked in this unit of work count too
    contact = session.get(models.Contact, contact_id)
    identities = session.execute(
        select(models.ChannelIdentity.channel, models.ChannelIdentity.external_id)
        .where(models.ChannelIdentity.contact_id == contact_id)
        .order_by(models.ChannelIdentity.channel, models.ChannelIdentity.external_id)
    ).all()
    return {
        "id": contact_id,
        "name": contact.name if contact else "",
        "email": contact.email if contact else None,
        "phone": contact.phone if contact else None,
        "identities": [{"channel": row[0], "external_id": row[1]} for row in identities],
    }


def record_contact(session: Session, backend: str | None, kind: EventKind, contact_id: int) -> None:
    """A contact changed its details (``CONTACT_UPDATED``, key ``contact:<id>``)."""
    if not mirrors(backend):
        return
    assert backend is not None  # for mypy: mirrors() said so
    payload = {"contact": contact_payload(session, contact_id)}
    record(session, backend, kind, contact_id, f"contact:{contact_id}", payload)


def open_contact_upsert(
    session: Session, backend: str | None, contact_id: int
) -> models.OutboxEvent | None:
    """The ``CONTACT_UPSERT`` of a link about to be made, recorded (and flushed) before
    it: on SQLite a SAVEPOINT that opens the transaction (``link`` makes one) commits
    on its own when released, so the outbox row must open it for the link and its event
    to commit together. :func:`settle_contact_upsert` fills it in or withdraws it."""
    if not mirrors(backend):
        return None
    assert backend is not None
    event = record(session, backend, EventKind.CONTACT_UPSERT, contact_id, "", {})
    session.flush()
    return event


def settle_contact_upsert(
    session: Session, event: models.OutboxEvent | None, contact_id: int, changed: bool
) -> None:
    """Complete the event for the contact that now holds the identity, or withdraw it
    when the link changed nothing (a repeated link is no news to the remote CRM)."""
    if event is None:
        return
    if not changed:
        session.delete(event)
        return
    event.contact_id = contact_id
    event.key = f"contact:{contact_id}"
    event.payload = {"contact": contact_payload(session, contact_id)}


def record_ticket(
    session: Session, backend: str | None, ticket: models.Ticket, fallback_contact: int | None
) -> None:
    """A ticket was opened (``TICKET_OPENED``, key ``ticket:<id>``) for its contact, else
    for its conversation's (``fallback_contact``); a ticket nobody is known for has no
    remote timeline to go on."""
    contact_id = ticket.contact_id or fallback_contact
    if not mirrors(backend) or contact_id is None:
        return
    assert backend is not None
    session.flush()
    payload = {
        "contact": contact_payload(session, contact_id),
        "reference": ticket.reference,
        "category": ticket.category,
        "subject": ticket.subject,
        "description": ticket.description,
        "status": ticket.status,
        "order_number": ticket.order.number if ticket.order is not None else None,
        "created_at": iso(ticket.created_at),
    }
    key = f"ticket:{ticket.id}"
    record(session, backend, EventKind.TICKET_OPENED, contact_id, key, payload)


def record_return(session: Session, backend: str | None, request: models.ReturnRequest) -> None:
    """A return was requested (``TICKET_OPENED`` in the remote CRM, key ``return:<id>``)."""
    if not mirrors(backend):
        return
    assert backend is not None
    session.flush()
    number = request.order.number
    payload = {
        "contact": contact_payload(session, request.contact_id),
        "reference": request.reference,
        "category": "return",
        "subject": f"Return {request.reference} of order {number}: {request.item}"[:200],
        "description": request.reason,
        "status": request.status,
        "order_number": number,
        "item": request.item,
        "created_at": iso(request.created_at),
    }
    key = f"return:{request.id}"
    record(session, backend, EventKind.TICKET_OPENED, request.contact_id, key, payload)


def record_conversation(
    session: Session, backend: str | None, interaction: models.Interaction
) -> None:
    """A closed Interaction with a contact, with its transcript (``CONVERSATION_LOGGED``,
    key ``interaction:<id>``)."""
    if not mirrors(backend) or interaction.contact_id is None:
        return
    assert backend is not None
    session.flush()
    lines = session.execute(
        select(models.InteractionMessage)
        .where(models.InteractionMessage.interaction_id == interaction.id)
        .order_by(models.InteractionMessage.event_ts, models.InteractionMessage.id)
    ).scalars()
    payload = {
        "contact": contact_payload(session, interaction.contact_id),
        "channel": interaction.channel,
        "started_at": iso(interaction.started_at),
        "ended_at": iso(interaction.ended_at),
        "outcome": interaction.outcome,
        "intents": list(interaction.intents or []),
        "summary": interaction.summary,
        "transcript": [
            {
                "direction": line.direction,
                "author": line.author,
                "time": iso(line.sent_at),
                "text": line.text,
            }
            for line in lines
        ],
    }
    key = f"interaction:{interaction.id}"
    kind = EventKind.CONVERSATION_LOGGED
    record(session, backend, kind, interaction.contact_id, key, payload)
