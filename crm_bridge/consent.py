"""What each customer agreed to receive, per topic and channel, with its history.

Decisions are appended, never updated: the newest decision for a (contact, topic,
channel) is the state, and every row keeps when, through which channel and with which
wording it was taken. A decision for channel ``*`` covers every channel until a newer
channel-specific one says otherwise. Without any decision, service messages (order
updates) are allowed and marketing topics are not: opting in is the customer's act.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import ContactNotFound, InvalidInput

ALL_CHANNELS = "*"
# Topic -> allowed when the customer never said anything (marketing is opt-in).
TOPIC_DEFAULTS = {"order_updates": True, "offers": False, "newsletter": False}
MAX_WORDING_CHARS = 2000


@dataclass(frozen=True)
class ConsentDecision:
    """One recorded decision."""

    topic: str
    channel: str
    granted: bool
    wording: str
    source: str
    recorded_at: datetime


@dataclass(frozen=True)
class ConsentState:
    """Whether a topic may be sent on a channel, and the decision that says so (None:
    the topic's default applies)."""

    topic: str
    channel: str
    allowed: bool
    decided_by: ConsentDecision | None


def _checked(topic: str, channel: str) -> None:
    if topic not in TOPIC_DEFAULTS:
        raise InvalidInput("topic", f"The topics are: {', '.join(TOPIC_DEFAULTS)}.")
    if not channel or len(channel) > 50:
        raise InvalidInput("channel", "Name a channel, or * for all of them.")


class ConsentBook:
    """Records and answers consent decisions; one short transaction per call."""

    def __init__(
        self, session_factory: sessionmaker, now: Callable[[], datetime] = models.utcnow
    ) -> None:
        self._factory = session_factory
        self._now = now

    def record(
        self,
        contact_id: int,
        topic: str,
        channel: str,
        granted: bool,
        wording: str,
        source: str = "chat",
    ) -> ConsentDecision:
        """Append a decision; ``wording`` is what the customer was shown or said yes/no to."""
        _checked(topic, channel)
        wording = wording.strip()
        if not wording or len(wording) > MAX_WORDING_CHARS:
            raise InvalidInput("wording", "Keep the wording the customer saw (1-2000 characters).")
        with unit_of_work(self._factory) as session:
            if session.get(models.Contact, contact_id) is None:
                raise ContactNotFound(f"No contact #{contact_id}.")
            row = models.Consent(
                contact_id=contact_id,
                topic=topic,
                channel=channel,
                granted=granted,
                wording=wording,
                source=source,
                recorded_at=self._now(),
            )
            session.add(row)
            session.flush()
            return _decision(row)

    def state(self, contact_id: int, topic: str, channel: str) -> ConsentState:
        """May ``topic`` be sent to the contact on ``channel`` now?"""
        _checked(topic, channel)
        with unit_of_work(self._factory) as session:
            row = session.execute(
                select(models.Consent)
                .where(
                    models.Consent.contact_id == contact_id,
                    models.Consent.topic == topic,
                    models.Consent.channel.in_((channel, ALL_CHANNELS)),
                )
                .order_by(models.Consent.recorded_at.desc(), models.Consent.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if row is None:
                return ConsentState(topic, channel, TOPIC_DEFAULTS[topic], None)
            return ConsentState(topic, channel, bool(row.granted), _decision(row))

    def history(self, contact_id: int) -> list[ConsentDecision]:
        """Every decision of the contact, oldest first (for an export or an audit)."""
        with unit_of_work(self._factory) as session:
            rows = session.execute(
                select(models.Consent)
                .where(models.Consent.contact_id == contact_id)
                .order_by(models.Consent.recorded_at, models.Consent.id)
            ).scalars()
            return [_decision(row) for row in rows]


def _decision(row: models.Consent) -> ConsentDecision:
    return ConsentDecision(
        topic=row.topic,
        channel=row.channel,
        granted=bool(row.granted),
        wording=row.wording,
        source=row.source,
        recorded_at=row.recorded_at,
    )
