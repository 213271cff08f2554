"""The transactional outbox to a remote CRM (``CRM_BACKEND=hubspot|salesforce``).

The SQL gateway and the interaction log call :func:`record` inside their own unit of
work, so an event exists exactly when the local write it mirrors was committed. The
:class:`OutboxWorker` (``python -m crm_bridge outbox run``, its own process) hands due
events to the adapter; nothing here runs in a request handler, so a slow or absent
remote CRM never delays a customer's reply.

Delivery rules:

- **In order per contact.** An event is due only when no older event of its contact is
  still pending or parked: a contact's new email delivered before an older change would
  be overwritten by the older one when that is retried, and a ticket must not reach the
  remote CRM before its contact. So a parked event holds back its contact's later
  events until it is retried or dropped (``outbox status`` says how many).
- **Leases.** A worker takes an event with a conditional UPDATE (status pending, lease
  free or expired, nothing older undelivered): of two workers only one gets it, and
  no transaction stays open during the remote call. A killed worker's lease expires
  (``lease_seconds``) and another worker delivers the event again; the adapter's
  stored remote ids (:class:`SqlRemoteRefs`) make that second write an update.
- **Retries never give up.** :class:`RemoteRetryable` (a 429, a 5xx, a timeout) backs off
  from 5 s, doubling to 10 min, or waits the CRM's ``retry_after``; an outage only
  delays. :class:`RemotePermanent` parks the event with its reason, as does an
  unexpected error (a bug does not fix itself by retrying; parked it is visible).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import RapportError, Unavailable
from crm_bridge.models import utcnow
from crm_bridge.remote.base import (
    EventKind,
    RemoteCrm,
    RemotePermanent,
    RemoteRetryable,
)
from crm_bridge.remote.base import OutboxEvent as Event

logger = logging.getLogger(__name__)

PENDING, DELIVERED, PARKED, DROPPED = "pending", "delivered", "parked", "dropped"
STATUSES = (PENDING, DELIVERED, PARKED, DROPPED)
UNDELIVERED = (PENDING, PARKED)  # what holds back a contact's later events
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 600.0
# A Retry-After longer than this is not believed (a misconfigured CRM must not stall us
# for days); the event is tried again after this long instead.
MAX_RETRY_AFTER_SECONDS = 3600.0
# Longer than any remote call an adapter makes (their timeouts are shorter).
LEASE_SECONDS = 120.0
MAX_ERROR_CHARS = 300


def mirrors(backend: str | None) -> bool:
    """Does ``backend`` (``CRM_BACKEND``) name a remote CRM that gets outbox events?"""
    return bool(backend) and backend != "sql"


def record(
    session: Session,
    backend: str,
    kind: EventKind,
    contact_id: int,
    key: str,
    payload: Mapping[str, Any],
) -> models.OutboxEvent:
    """Add one event to the outbox in the caller's unit of work (it commits with the
    caller's write, or not at all)."""
    event = models.OutboxEvent(
        backend=backend,
        kind=EventKind(kind).value,
        contact_id=contact_id,
        key=key,
        payload=dict(payload),
        status=PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
        created_at=utcnow(),
    )
    session.add(event)
    return event


class SqlRemoteRefs:
    """:class:`crm_bridge.remote.base.RemoteRefs` in the ``remote_refs`` table."""

    def __init__(self, factory: sessionmaker, backend: str) -> None:
        self._factory = factory
        self.backend = backend

    def get(self, key: str) -> str | None:
        """The remote id stored for ``key``, or None."""
        with unit_of_work(self._factory) as session:
            found: str | None = session.execute(
                select(models.RemoteRef.remote_id).where(
                    models.RemoteRef.backend == self.backend, models.RemoteRef.key == key
                )
            ).scalar_one_or_none()
            return found

    def put(self, key: str, remote_id: str) -> None:
        """Store (or replace: the remote record may have been recreated) ``key``'s id."""
        with unit_of_work(self._factory) as session:
            query = select(models.RemoteRef).where(
                models.RemoteRef.backend == self.backend, models.RemoteRef.key == key
            )
            row = session.execute(query).scalar_one_or_none()
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(
                            models.RemoteRef(backend=self.backend, key=key, remote_id=remote_id)
                        )
                    return
                except IntegrityError:  # another worker stored it meanwhile
                    row = session.execute(query).scalar_one()
            row.remote_id = remote_id


@dataclass
class RoundReport:
    """What one round of the worker did."""

    delivered: int = 0
    retried: int = 0
    parked: int = 0
    lost: int = 0  # due events another worker took first

    @property
    def handled(self) -> int:
        """Events this round took and finished with (whatever the result)."""
        return self.delivered + self.retried + self.parked


def counts(factory: sessionmaker, backend: str | None = None) -> dict[str, int]:
    """How many events are in each status (of ``backend``, or of every backend)."""
    table = models.OutboxEvent
    query = select(table.status, func.count()).group_by(table.status)
    if backend:
        query = query.where(table.backend == backend)
    with unit_of_work(factory) as session:
        found = {name: 0 for name in STATUSES}
        found.update({row[0]: int(row[1]) for row in session.execute(query)})
        return found


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """How long to wait before attempt ``attempts + 1``: the CRM's ``retry_after`` when it
    gave one, else 5 s doubling up to 10 min."""
    if retry_after is not None and retry_after >= 0:
        return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
    return min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)


def _reason(error: BaseException) -> str:
    # The adapters' messages name no personal data (RemoteCrm's contract); the type
    # tells a 429 from a validation error at a glance.
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]


class OutboxWorker:
    """Delivers due outbox events of one backend through its adapter."""

    def __init__(
        self,
        factory: sessionmaker,
        adapter: RemoteCrm,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Any] | None = None,
        lease_seconds: float = LEASE_SECONDS,
        before_round: Callable[[], Any] | None = None,
    ) -> None:
        self._factory = factory
        self.adapter = adapter
        self.backend = adapter.name
        self.refs = SqlRemoteRefs(factory, self.backend)
        self._now = now
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait
        self._lease = timedelta(seconds=lease_seconds)
        # Work done before each round (the CLI closes idle conversations there).
        self._before_round = before_round
        self.owner = uuid.uuid4().hex  # whose lease it is
        self._last_line = ""

    def stop(self) -> None:
        """Finish the event in hand, then leave :meth:`run_forever`."""
        self._stopping.set()

    def run_forever(self, interval: float = 5.0, limit: int = 50) -> None:
        """Run rounds until :meth:`stop`; waits ``interval`` seconds after a round that
        left nothing due. A database outage is logged and waited out."""
        while not self._stopping.is_set():
            try:
                report = self.run_once(limit)
            except Unavailable:
                logger.warning("Outbox: the CRM database is unavailable; retrying")
                report = RoundReport()
            if report.handled < limit:
                self._sleep(interval)

    def run_once(self, limit: int = 50) -> RoundReport:
        """Deliver up to ``limit`` due events; logs the queue's counts afterwards."""
        if self._before_round is not None:
            self._before_round()
        report = RoundReport()
        # A delivered event makes its contact's next one due: select again until
        # nothing is due or the limit is reached.
        while report.handled < limit:
            taken = 0
            for event_id in self._due(limit - report.handled):
                event = self._take(event_id)
                if event is None:
                    report.lost += 1
                    continue
                taken += 1
                self._deliver(event, report)
            if not taken:
                break
        self._log_counts(report)
        return report

    def _due_condition(self, now: datetime) -> Any:
        table = models.OutboxEvent
        older = aliased(models.OutboxEvent)
        return and_(
            table.backend == self.backend,
            table.status == PENDING,
            table.next_attempt_at <= now,
            (table.lease_until.is_(None)) | (table.lease_until <= now),
            ~exists().where(
                older.backend == table.backend,
                older.contact_id == table.contact_id,
                older.id < table.id,
                older.status.in_(UNDELIVERED),
            ),
        )

    def _due(self, limit: int) -> list[int]:
        with unit_of_work(self._factory) as session:
            ids = session.execute(
                select(models.OutboxEvent.id)
                .where(self._due_condition(self._now()))
                .order_by(models.OutboxEvent.id)
                .limit(limit)
            ).scalars()
            return list(ids)

    def _take(self, event_id: int) -> Event | None:
        """Lease the event if it is still due (the condition is checked again in the
        UPDATE: another worker may have taken it, or an older event become undelivered)."""
        now = self._now()
        table = models.OutboxEvent
        with unit_of_work(self._factory) as session:
            taken = session.execute(
                update(table)
                .where(table.id == event_id, self._due_condition(now))
                .values(
                    lease_until=now + self._lease,
                    lease_owner=self.owner,
                    attempts=table.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if not taken:
                return None
            row = session.get(table, event_id)
            assert row is not None  # we just updated it
            return Event(
                id=row.id,
                kind=EventKind(row.kind),
                contact_id=row.contact_id,
                key=row.key,
                payload=dict(row.payload or {}),
                attempts=row.attempts,
            )

    def _deliver(self, event: Event, report: RoundReport) -> None:
        try:
            self.adapter.deliver(event, self.refs)
        except RemoteRetryable as error:
            wait = backoff_seconds(event.attempts, error.retry_after)
            self._finish(event, next_attempt_in=wait, error=error)
            report.retried += 1
            logger.warning(
                "Outbox event #%d (%s) not delivered (%s); attempt %d, next in %.0f s",
                event.id,
                event.kind.value,
                type(error).__name__,
                event.attempts,
                wait,
            )
        except Unavailable as error:  # e.g. our database, inside the adapter's refs
            wait = backoff_seconds(event.attempts)
            self._finish(event, next_attempt_in=wait, error=error)
            report.retried += 1
            logger.warning("Outbox event #%d: %s; next in %.0f s", event.id, _reason(error), wait)
        except RemotePermanent as error:
            self._park(event, error, report)
        except Exception as error:  # a bug does not fix itself by retrying: park it
            logger.exception("Outbox event #%d: unexpected error in the adapter", event.id)
            self._park(event, error, report)
        else:
            self._finish(event)
            report.delivered += 1

    def _park(self, event: Event, error: BaseException, report: RoundReport) -> None:
        self._finish(event, park=True, error=error)
        report.parked += 1
        logger.error("Outbox event #%d (%s) parked: %s", event.id, event.kind.value, _reason(error))

    def _finish(
        self,
        event: Event,
        next_attempt_in: float | None = None,
        park: bool = False,
        error: BaseException | None = None,
    ) -> None:
        """Acknowledge, reschedule or park the event, if we still hold its lease (when
        not, another worker has it; our remote write was idempotent)."""
        now = self._now()
        table = models.OutboxEvent
        values: dict[str, Any] = {"lease_until": None, "lease_owner": None}
        if error is None:
            values.update(status=DELIVERED, delivered_at=now, last_error=None, payload={})
        elif park:
            values.update(status=PARKED, last_error=_reason(error))
        else:
            values.update(
                last_error=_reason(error),
                next_attempt_at=now + timedelta(seconds=next_attempt_in or 0.0),
            )
        with unit_of_work(self._factory) as session:
            session.execute(
                update(table)
                .where(table.id == event.id, table.lease_owner == self.owner)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def _log_counts(self, report: RoundReport) -> None:
        try:
            line = " ".join(f"{k}={v}" for k, v in counts(self._factory, self.backend).items())
        except RapportError:
            return
        # Every round that did something, or changed the counts; quiet rounds are debug.
        level = logging.INFO if report.handled or line != self._last_line else logging.DEBUG
        self._last_line = line
        logger.log(
            level,
            "Outbox %s round: delivered=%d retried=%d parked=%d; queue %s",
            self.backend,
            report.delivered,
            report.retried,
            report.parked,
            line,
        )
