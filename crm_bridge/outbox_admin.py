"""Looking after the outbox from a terminal: what is queued, what is parked and why,
retrying or dropping a parked event (``python -m crm_bridge outbox status|retry|drop``).

A dropped event is marked ``dropped`` with who dropped it and when, not deleted: "why is
this conversation not in HubSpot?" then has an answer. Its payload is emptied, as a
delivered event's is: nobody will send it, and it holds personal data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Conflict, NotFound
from crm_bridge.models import utcnow
from crm_bridge.outbox import DROPPED, PARKED, PENDING, STATUSES, UNDELIVERED, counts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParkedEvent:
    """A parked event as ``outbox status`` lists it (ids and reasons, no payload)."""

    id: int
    kind: str
    key: str
    contact_id: int
    attempts: int
    last_error: str
    created_at: datetime
    blocks: int  # the contact's later events it holds back


@dataclass(frozen=True)
class OutboxStatus:
    """How many events are in each status, and the parked ones."""

    counts: dict[str, int]
    parked: list[ParkedEvent] = field(default_factory=list)

    def line(self) -> str:
        """The counts as one log line (no personal data)."""
        return " ".join(f"{name}={self.counts.get(name, 0)}" for name in STATUSES)


def status(factory: sessionmaker, backend: str | None = None) -> OutboxStatus:
    """Counts per status and the parked events (of ``backend``, or of every backend)."""
    table = models.OutboxEvent
    by_status = counts(factory, backend)
    with unit_of_work(factory) as session:
        parked_query = select(table).where(table.status == PARKED).order_by(table.id)
        if backend:
            parked_query = parked_query.where(table.backend == backend)
        parked = []
        for row in session.execute(parked_query).scalars():
            blocks = session.execute(
                select(func.count()).where(
                    table.backend == row.backend,
                    table.contact_id == row.contact_id,
                    table.id > row.id,
                    table.status.in_(UNDELIVERED),
                )
            ).scalar_one()
            parked.append(
                ParkedEvent(
                    id=row.id,
                    kind=row.kind,
                    key=row.key,
                    contact_id=row.contact_id,
                    attempts=row.attempts,
                    last_error=row.last_error or "",
                    created_at=row.created_at,
                    blocks=int(blocks),
                )
            )
        return OutboxStatus(by_status, parked)


def _event_row(session: Session, event_id: int) -> models.OutboxEvent:
    row = session.get(models.OutboxEvent, event_id)
    if row is None:
        raise NotFound(f"No outbox event #{event_id}.")
    return row


def retry(factory: sessionmaker, event_id: int, now: datetime | None = None) -> None:
    """Put a parked (or waiting) event back in the queue, due now."""
    with unit_of_work(factory) as session:
        row = _event_row(session, event_id)
        if row.status not in UNDELIVERED:
            raise Conflict(f"Outbox event #{event_id} is {row.status}; only parked ones retry.")
        row.status = PENDING
        row.next_attempt_at = now or utcnow()
        row.lease_until = row.lease_owner = None


def retry_parked(factory: sessionmaker, backend: str | None = None) -> int:
    """Put every parked event (of ``backend``) back in the queue; how many."""
    table = models.OutboxEvent
    with unit_of_work(factory) as session:
        query = update(table).where(table.status == PARKED)
        if backend:
            query = query.where(table.backend == backend)
        result = session.execute(
            query.values(status=PENDING, next_attempt_at=utcnow(), lease_until=None)
        )
        return int(result.rowcount or 0)


def drop(factory: sessionmaker, event_id: int, actor: str, now: datetime | None = None) -> None:
    """Give up on an undelivered event: it leaves the queue (its contact's later events
    go on) and stays, marked dropped by ``actor``, with its payload emptied."""
    with unit_of_work(factory) as session:
        row = _event_row(session, event_id)
        if row.status not in UNDELIVERED:
            raise Conflict(f"Outbox event #{event_id} is {row.status}; it cannot be dropped.")
        row.status = DROPPED
        row.payload = {}
        row.dropped_by = actor[:100]
        row.dropped_at = now or utcnow()
        row.lease_until = row.lease_owner = None
    logger.warning("Outbox event #%d dropped by an operator", event_id)
