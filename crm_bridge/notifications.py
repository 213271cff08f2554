"""The queue of proactive messages (table ``notifications``): plan, take what is due,
and record what became of each send.

Planning is idempotent: a message is about a ``reference`` ("order:10001:shipped",
"campaign:<slug>") and a contact gets each reference once, whichever channel it went
to and however often the plan is repeated. A failed send is retried with exponential
back-off (30 s, 1, 2, 4, 8 minutes) and, after ``MAX_ATTEMPTS``, marked ``failed`` with
its last error: nothing is dropped silently. Every message sent becomes an outbound
Interaction on the contact's timeline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import InvalidInput, OrderNotFound
from crm_bridge.interaction_log import transcript_line
from crm_bridge.proactive import (
    Decision,
    Reach,
    best_channel,
    can_send,
    load_reach,
)
from crm_bridge.quiet_hours import NO_QUIET_HOURS, QuietHours
from crm_bridge.sql_gateway import get_or_create_interaction
from crm_bridge.validation import normalise_order_number

MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(seconds=30)
# A taken row is left alone by other deliverers this long (a crash mid-send: it is
# retried after the lease, so a message is sent at least once, rarely twice).
CLAIM_LEASE = timedelta(minutes=5)
# When a kept web chat message is looked at again (the customer may be back).
WEB_RECHECK = timedelta(minutes=5)
# A message still waiting after this is stale (an old order update, a past offer).
MAX_WAIT = timedelta(days=7)
MAX_TEXT_CHARS = 4096  # Telegram's limit, the strictest of the channels
# The Interaction outcome of a proactive message: not a conversation's outcome, so the
# Insights' outcome rates (which count only the conversation outcomes) leave it out.
NOTIFICATION_OUTCOME = "notification"
ORDER_TEXTS = {
    "processing": "Your order {number} is being prepared.",
    "shipped": "Your order {number} has shipped{carrier}.{expected}",
    "delivered": "Your order {number} has been delivered.",
    "cancelled": "Your order {number} has been cancelled.",
}


@dataclass(frozen=True)
class Message:
    """What to send to one contact about one reference."""

    contact_id: int
    topic: str
    reference: str
    text: str


@dataclass(frozen=True)
class NotificationView:
    """One notification row, detached from the session."""

    id: int
    contact_id: int
    topic: str
    channel: str
    external_id: str
    reference: str
    text: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class PlanLine:
    """What planning decided for one message: a new row (``notification_id``), an earlier
    row for the same reference (``existing``), or no row and why (``decision``)."""

    message: Message
    decision: Decision
    notification_id: int | None = None
    existing: bool = False


def _view(row: models.Notification) -> NotificationView:
    return NotificationView(
        row.id,
        row.contact_id,
        row.topic,
        row.channel,
        row.external_id,
        row.reference,
        row.text,
        row.status,
        row.attempts,
        row.next_attempt_at,
        row.last_error,
        row.sent_at,
    )


def campaign_reference(topic: str, text: str, slug: str = "") -> str:
    """``campaign:<slug>``: the given slug, else one derived from the topic and text (the
    same campaign planned twice is one campaign)."""
    if slug:
        cleaned = re.sub(r"[^a-z0-9-]+", "-", slug.lower()).strip("-")[:80]
        if not cleaned:
            raise InvalidInput("campaign", "Name the campaign with letters or digits.")
        return f"campaign:{cleaned}"
    return f"campaign:{topic}-{hashlib.sha256(f'{topic}|{text}'.encode()).hexdigest()[:12]}"


def order_text(order: models.Order) -> str:
    """The customer-facing update for the order's status (only what they already know)."""
    carrier = f" with {order.carrier}" if order.carrier else ""
    expected = ""
    if order.expected_delivery is not None:
        expected = f" Expected delivery: {order.expected_delivery:%A %d %B}."
    template = ORDER_TEXTS.get(order.status, "Your order {number} is now {status}.")
    return template.format(
        number=order.number, carrier=carrier, expected=expected, status=order.status
    )


class NotificationQueue:
    """Plans, hands out and settles notifications; one transaction per call."""

    def __init__(
        self,
        session_factory: sessionmaker,
        now: Callable[[], datetime] = models.utcnow,
        session_timeout: timedelta = timedelta(minutes=60),
    ) -> None:
        self._factory = session_factory
        self._now = now
        self._session_timeout = session_timeout

    def order_message(self, order_number: str) -> Message:
        """The update about an order's current status, for the order's contact."""
        number = normalise_order_number(order_number)
        with unit_of_work(self._factory) as session:
            order = session.execute(
                select(models.Order).where(models.Order.number == number)
            ).scalar_one_or_none()
            if order is None:
                raise OrderNotFound(f"No order {number}.")
            reference = f"order:{order.number}:{order.status}"
            return Message(order.contact_id, "order_updates", reference, order_text(order))

    def campaign_messages(self, topic: str, text: str, slug: str = "") -> list[Message]:
        """The campaign's message for every contact (merged-away contacts excepted)."""
        text = (text or "").strip()
        if not text or len(text) > MAX_TEXT_CHARS:
            raise InvalidInput("text", f"Give the campaign's text (1-{MAX_TEXT_CHARS} characters).")
        reference = campaign_reference(topic, text, slug)
        with unit_of_work(self._factory) as session:
            ids = session.execute(
                select(models.Contact.id)
                .where(models.Contact.merged_into_id.is_(None))
                .order_by(models.Contact.id)
            ).scalars()
            return [Message(int(i), topic, reference, text) for i in ids]

    def plan(
        self,
        messages: Sequence[Message],
        quiet: QuietHours = NO_QUIET_HOURS,
        channels: Iterable[str] | None = None,
        dry_run: bool = False,
    ) -> list[PlanLine]:
        """Decide each message's channel with ``can_send`` and queue those that may go now
        or later (``dry_run``: decide only, write nothing)."""
        now = self._now()
        wanted = list(channels) if channels is not None else None
        lines: list[PlanLine] = []
        with unit_of_work(self._factory) as session:
            reach = load_reach(
                session, {m.contact_id for m in messages}, now, self._session_timeout
            )
            for message in messages:
                contact = reach.get(message.contact_id, Reach(message.contact_id))
                decision = best_channel(contact, message.topic, now, quiet=quiet, channels=wanted)
                earlier = session.execute(
                    select(models.Notification.id).where(
                        models.Notification.reference == message.reference,
                        models.Notification.contact_id == message.contact_id,
                    )
                ).first()
                if earlier is not None:
                    lines.append(PlanLine(message, decision, int(earlier[0]), existing=True))
                elif not (decision.allowed or decision.later) or dry_run:
                    lines.append(PlanLine(message, decision))
                else:
                    row = self._queue(session, message, decision, now)
                    lines.append(PlanLine(message, decision, row.id))
            if dry_run:
                session.rollback()
        return lines

    def _queue(
        self, session: Session, message: Message, decision: Decision, now: datetime
    ) -> models.Notification:
        assert decision.channel is not None and decision.external_id is not None
        row = models.Notification(
            contact_id=message.contact_id,
            topic=message.topic,
            channel=decision.channel,
            external_id=decision.external_id,
            reference=message.reference,
            text=message.text,
            status="pending" if decision.allowed else "waiting",
            attempts=0,
            next_attempt_at=self._recheck_at(decision, now),
            last_error=None if decision.allowed else decision.reason,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row

    @staticmethod
    def _recheck_at(decision: Decision, now: datetime) -> datetime:
        if decision.allowed:
            return now
        return decision.not_before or now + WEB_RECHECK

    def take_due(self, limit: int = 500) -> list[NotificationView]:
        """Due pending and waiting rows, each taken for ``CLAIM_LEASE`` so that a second
        deliverer running at the same time does not send them too."""
        now = self._now()
        taken: list[NotificationView] = []
        with unit_of_work(self._factory) as session:
            rows = session.execute(
                select(models.Notification.id, models.Notification.next_attempt_at)
                .where(
                    models.Notification.status.in_(("pending", "waiting")),
                    models.Notification.next_attempt_at <= now,
                )
                .order_by(models.Notification.next_attempt_at, models.Notification.id)
                .limit(limit)
            ).all()
            for row_id, seen in rows:
                # Optimistic claim: only if nobody moved the row since we read it.
                claimed = session.execute(
                    update(models.Notification)
                    .where(
                        models.Notification.id == row_id,
                        models.Notification.next_attempt_at == seen,
                    )
                    .values(next_attempt_at=now + CLAIM_LEASE)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount == 1:
                    taken.append(_view(session.get(models.Notification, row_id)))
        return taken

    def decide_now(
        self, notification: NotificationView, quiet: QuietHours = NO_QUIET_HOURS
    ) -> Decision:
        """``can_send`` for a queued row, right before sending (consent may have changed)."""
        now = self._now()
        with unit_of_work(self._factory) as session:
            reach = load_reach(session, {notification.contact_id}, now, self._session_timeout)
        contact = reach.get(notification.contact_id, Reach(notification.contact_id))
        return can_send(
            contact,
            notification.topic,
            notification.channel,
            now,
            quiet=quiet,
            external_id=notification.external_id,
        )

    def mark_sent(self, notification_id: int) -> NotificationView:
        """The platform took the message: record it, and its outbound Interaction."""
        now = self._now()
        with unit_of_work(self._factory) as session:
            row = self._row(session, notification_id)
            row.status, row.sent_at, row.last_error = "sent", now, None
            row.attempts += 1
            _record_outbound(session, row, now)
            return _view(row)

    def mark_failed(self, notification_id: int, error: str) -> NotificationView:
        """A send failed: retry after 30 s, doubling, and give up (``failed``) after
        ``MAX_ATTEMPTS`` attempts. ``error`` must name no customer data."""
        now = self._now()
        with unit_of_work(self._factory) as session:
            row = self._row(session, notification_id)
            row.attempts += 1
            row.last_error = error[:300]
            if row.attempts >= MAX_ATTEMPTS:
                row.status = "failed"
            else:
                row.status = "pending"
                row.next_attempt_at = now + FIRST_RETRY * 2 ** (row.attempts - 1)
            return _view(row)

    def mark_waiting(self, notification_id: int, decision: Decision) -> NotificationView:
        """Not now (quiet hours, no open web chat): look again later; a message kept for
        longer than ``MAX_WAIT`` is stale and marked failed."""
        now = self._now()
        with unit_of_work(self._factory) as session:
            row = self._row(session, notification_id)
            row.last_error = decision.reason[:300]
            if now - row.created_at > MAX_WAIT:
                row.status, row.last_error = "failed", f"expired: {decision.reason}"[:300]
            else:
                row.status, row.next_attempt_at = "waiting", self._recheck_at(decision, now)
            return _view(row)

    def mark_refused(self, notification_id: int, reason: str) -> NotificationView:
        """Never to be sent (e.g. the customer withdrew consent): failed, with the reason."""
        with unit_of_work(self._factory) as session:
            row = self._row(session, notification_id)
            row.status, row.last_error = "failed", f"not sent: {reason}"[:300]
            return _view(row)

    def retry_at(self, notification_id: int, when: datetime, reason: str) -> NotificationView:
        """Put a row back for ``when`` without counting an attempt (a platform's 429)."""
        with unit_of_work(self._factory) as session:
            row = self._row(session, notification_id)
            row.status, row.next_attempt_at, row.last_error = "pending", when, reason[:300]
            return _view(row)

    def list(self, reference: str | None = None, limit: int = 200) -> list[NotificationView]:
        """The newest notifications (of one reference when given)."""
        with unit_of_work(self._factory) as session:
            query = select(models.Notification).order_by(models.Notification.id.desc())
            if reference:
                query = query.where(models.Notification.reference == reference)
            return [_view(row) for row in session.execute(query.limit(limit)).scalars()]

    @staticmethod
    def _row(session: Session, notification_id: int) -> models.Notification:
        row = session.get(models.Notification, notification_id)
        if row is None:
            raise InvalidInput("notification", f"No notification #{notification_id}.")
        return row


def _record_outbound(session: Session, row: models.Notification, now: datetime) -> None:
    """One outbound Interaction per message sent, under its own sender id
    (``notification:<id>``): written under the customer's conversation id, it would
    become the "current" session that their next messages are logged into."""
    ts = now.timestamp()
    interaction = get_or_create_interaction(session, f"notification:{row.id}", ts, row.channel)
    interaction.contact_id = row.contact_id
    interaction.closed = True
    interaction.outcome = NOTIFICATION_OUTCOME
    interaction.summary = f"proactive {row.topic}: {row.reference}"
    line = transcript_line(
        {"event": "bot", "timestamp": ts, "text": row.text}, "bot", ts, f"notification:{row.id}"
    )
    line.interaction_id = interaction.id
    session.add(line)
