"""Who owns a conversation, the bot or a person, held in one place every process sees.

A handoff is *queued* when the bot asks for a person, *agent* once an agent claims it,
and *closed* when the agent hands it back (or nobody claimed it in time). Claims are
atomic: when two agents click at once, exactly one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import HandoffConflict, HandoffNotFound, InvalidInput
from crm_bridge.gateway import ConversationRef
from crm_bridge.models import utcnow
from crm_bridge.sql_gateway import get_or_create_interaction

LIVE_STATES = ("queued", "agent")


class HandoffReason(str, enum.Enum):
    """Why the conversation went to a person."""

    CUSTOMER_REQUEST = "customer_request"
    REPEATED_FALLBACK = "repeated_fallback"
    ACTION_FAILED = "action_failed"
    AGENT_INITIATIVE = "agent_initiative"


class HandbackOutcome(str, enum.Enum):
    """How a handoff ended."""

    RESOLVED = "resolved"
    NEEDS_FOLLOW_UP = "needs_follow_up"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class HandoffView:
    id: int
    sender_id: str
    channel: str
    interaction_id: int
    reason: str
    state: str
    requested_at: datetime
    claimed_at: datetime | None
    handed_back_at: datetime | None
    agent_id: str | None
    agent_name: str | None
    outcome: str | None
    csat: int | None
    console_channel: str | None = None
    console_thread: str | None = None


@dataclass(frozen=True)
class HandoffContext:
    """What the CRM knows about a handoff's conversation, for an agent console."""

    contact: str | None
    intents: list[str]
    references: list[str]
    recent: list[tuple[str, str]]  # (who, text), oldest first


@dataclass(frozen=True)
class Ownership:
    """``owner`` is ``bot``, ``queued`` or ``agent``; the handoff when not the bot's."""

    owner: str
    handoff: HandoffView | None = None


def _view(row: models.Handoff) -> HandoffView:
    return HandoffView(
        id=row.id,
        sender_id=row.sender_id,
        channel=row.channel,
        interaction_id=row.interaction_id,
        reason=row.reason,
        state=row.state,
        requested_at=row.requested_at,
        claimed_at=row.claimed_at,
        handed_back_at=row.handed_back_at,
        agent_id=row.agent_id,
        agent_name=row.agent_name,
        outcome=row.outcome,
        csat=row.csat,
        console_channel=row.console_channel,
        console_thread=row.console_thread,
    )


class HandoffDesk:
    """Requests, claims, hand-backs and timeouts of handoffs; one transaction each."""

    def __init__(self, url_or_factory: str | sessionmaker) -> None:
        self._factory = (
            session_factory(url_or_factory) if isinstance(url_or_factory, str) else url_or_factory
        )

    def request(
        self,
        conversation: ConversationRef,
        reason: HandoffReason,
        ticket_id: int | None = None,
    ) -> HandoffView:
        """Queue the conversation for a person; the live handoff if one exists already."""
        with unit_of_work(self._factory) as session:
            live = self._live(session, conversation.sender_id)
            if live is not None:
                return _view(live)
            interaction = get_or_create_interaction(
                session,
                conversation.sender_id,
                conversation.session_started_at,
                conversation.channel,
            )
            row = models.Handoff(
                interaction_id=interaction.id,
                ticket_id=ticket_id,
                sender_id=conversation.sender_id,
                channel=conversation.channel,
                reason=HandoffReason(reason).value,
                state="queued",
                requested_at=utcnow(),
            )
            try:
                with session.begin_nested():
                    session.add(row)
                    session.flush()
            except IntegrityError:
                # A concurrent request created the live handoff first: use that one.
                live = self._live(session, conversation.sender_id)
                assert live is not None
                return _view(live)
            return _view(row)

    def take_over(self, interaction_id: int, agent_id: str, agent_name: str) -> HandoffView:
        """An agent takes a conversation on their own initiative (from its Interaction).

        A queued handoff of that conversation is claimed; one already held by an agent
        is a ``HandoffConflict``; otherwise a new handoff starts in the agent's hands.
        """
        if not agent_id.strip():
            raise InvalidInput("agent_id", "An agent id is required.")
        with unit_of_work(self._factory) as session:
            interaction = session.get(models.Interaction, interaction_id)
            if interaction is None:
                raise HandoffNotFound(f"No interaction #{interaction_id}.")
            live = self._live(session, interaction.sender_id)
            if live is None:
                row = models.Handoff(
                    interaction_id=interaction.id,
                    sender_id=interaction.sender_id,
                    channel=interaction.channel or "rest",
                    reason=HandoffReason.AGENT_INITIATIVE.value,
                    state="agent",
                    requested_at=utcnow(),
                    claimed_at=utcnow(),
                    agent_id=agent_id,
                    agent_name=agent_name or agent_id,
                )
                try:
                    with session.begin_nested():
                        session.add(row)
                        session.flush()
                    return _view(row)
                except IntegrityError:
                    live = self._live(session, interaction.sender_id)
            if live is None or live.state != "queued":
                raise HandoffConflict("An agent already holds this conversation.")
            handoff_id = live.id
        return self.claim(handoff_id, agent_id, agent_name)

    def context(self, handoff_id: int, recent: int = 10) -> HandoffContext:
        """The conversation as the CRM recorded it: contact, intents, references, and the
        last ``recent`` transcript lines."""
        with unit_of_work(self._factory) as session:
            interaction = self._get(session, handoff_id).interaction
            contact = interaction.contact
            who = None
            if contact is not None:
                who = f"{contact.name} <{contact.email}>" if contact.email else contact.name
            lines = [
                ("Customer" if m.direction == "inbound" else m.author.capitalize(), m.text)
                for m in interaction.messages
                if m.text and not m.text.startswith("/")
            ]
            return HandoffContext(
                contact=who,
                intents=list(interaction.intents or []),
                references=[t.reference for t in interaction.tickets]
                + [r.reference for r in interaction.returns],
                recent=lines[-recent:],
            )

    def attach_console_thread(self, handoff_id: int, channel: str, thread: str) -> HandoffView:
        """Remember where the agent console discusses this handoff (a Slack thread)."""
        with unit_of_work(self._factory) as session:
            row = self._get(session, handoff_id)
            row.console_channel, row.console_thread = channel, thread
            return _view(row)

    def by_console_thread(self, channel: str, thread: str) -> HandoffView | None:
        """The handoff an agent console thread belongs to, if any."""
        with unit_of_work(self._factory) as session:
            row = session.execute(
                select(models.Handoff)
                .where(
                    models.Handoff.console_channel == channel,
                    models.Handoff.console_thread == thread,
                )
                .order_by(models.Handoff.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            return _view(row) if row else None

    def held_by(self, agent_id: str) -> list[HandoffView]:
        """The conversations this agent holds now."""
        with unit_of_work(self._factory) as session:
            rows = session.execute(
                select(models.Handoff)
                .where(models.Handoff.state == "agent", models.Handoff.agent_id == agent_id)
                .order_by(models.Handoff.id)
            ).scalars()
            return [_view(row) for row in rows]

    def ownership(self, sender_id: str) -> Ownership:
        """Who answers this conversation now."""
        with unit_of_work(self._factory) as session:
            live = self._live(session, sender_id)
            if live is None:
                return Ownership("bot")
            return Ownership(live.state, _view(live))

    def claim(self, handoff_id: int, agent_id: str, agent_name: str) -> HandoffView:
        """Give a queued handoff to an agent; ``HandoffConflict`` if someone was first."""
        if not agent_id.strip():
            raise InvalidInput("agent_id", "An agent id is required.")
        with unit_of_work(self._factory) as session:
            # One conditional UPDATE: the database decides which of two clicks wins.
            result = session.execute(
                update(models.Handoff)
                .where(models.Handoff.id == handoff_id, models.Handoff.state == "queued")
                .values(
                    state="agent",
                    agent_id=agent_id,
                    agent_name=agent_name or agent_id,
                    claimed_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                self._get(session, handoff_id)  # HandoffNotFound when there is no such id
                raise HandoffConflict("This conversation is not waiting for an agent any more.")
            return _view(self._get(session, handoff_id))

    def hand_back(self, handoff_id: int, agent_id: str, outcome: HandbackOutcome) -> HandoffView:
        """The owning agent returns the conversation to the bot."""
        with unit_of_work(self._factory) as session:
            row = self._get(session, handoff_id)
            if row.state != "agent" or row.agent_id != agent_id:
                raise HandoffConflict("Only the agent who holds the conversation can hand it back.")
            row.state, row.outcome = "closed", HandbackOutcome(outcome).value
            row.handed_back_at = utcnow()
            return _view(row)

    def expire_unclaimed(self, older_than: timedelta) -> list[HandoffView]:
        """Close queued handoffs nobody claimed in time (outcome ``timed_out``)."""
        cutoff = utcnow() - older_than
        with unit_of_work(self._factory) as session:
            rows = (
                session.execute(
                    select(models.Handoff)
                    .where(models.Handoff.state == "queued", models.Handoff.requested_at < cutoff)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            for row in rows:
                row.state, row.outcome, row.handed_back_at = "closed", "timed_out", utcnow()
            return [_view(row) for row in rows]

    def queue_position(self, handoff_id: int) -> int:
        """1 for the oldest queued handoff, 2 for the next...; 0 once it is not queued."""
        with unit_of_work(self._factory) as session:
            row = self._get(session, handoff_id)
            if row.state != "queued":
                return 0
            ahead = session.execute(
                select(func.count())
                .select_from(models.Handoff)
                .where(models.Handoff.state == "queued", models.Handoff.id < row.id)
            ).scalar_one()
            return int(ahead) + 1

    def typical_wait(self, recent: int = 50) -> timedelta | None:
        """The median time from request to claim over the latest claimed handoffs."""
        with unit_of_work(self._factory) as session:
            rows = session.execute(
                select(models.Handoff.requested_at, models.Handoff.claimed_at)
                .where(
                    models.Handoff.claimed_at.is_not(None),
                    models.Handoff.reason != HandoffReason.AGENT_INITIATIVE.value,
                )
                .order_by(models.Handoff.claimed_at.desc())
                .limit(recent)
            ).all()
        waits = sorted(claimed - requested for requested, claimed in rows)
        return waits[len(waits) // 2] if waits else None

    def record_agent_reply(self, handoff_id: int, agent_id: str, text: str) -> HandoffView:
        """Check the agent holds the conversation and put their reply in the transcript."""
        import time

        from crm_bridge.interaction_log import InteractionLog

        message = (text or "").strip()
        if not message:
            raise InvalidInput("text", "The reply is empty.")
        with unit_of_work(self._factory) as session:
            row = self._get(session, handoff_id)
            if row.state != "agent" or row.agent_id != agent_id:
                raise HandoffConflict("Only the agent who holds the conversation can reply.")
            handoff = _view(row)
        InteractionLog(self._factory).record_events(
            [
                {
                    "sender_id": handoff.sender_id,
                    "event": "bot",
                    "timestamp": time.time(),
                    "text": message[:5000],
                    "metadata": {"agent": {"id": agent_id, "name": handoff.agent_name}},
                }
            ]
        )
        return handoff

    def last_handed_back(self, sender_id: str) -> HandoffView | None:
        """The conversation's most recent handoff that an agent handed back."""
        with unit_of_work(self._factory) as session:
            row = session.execute(
                select(models.Handoff)
                .where(
                    models.Handoff.sender_id == sender_id,
                    models.Handoff.state == "closed",
                    models.Handoff.agent_id.is_not(None),
                )
                .order_by(models.Handoff.handed_back_at.desc(), models.Handoff.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            return _view(row) if row else None

    def get(self, handoff_id: int) -> HandoffView:
        """One handoff; ``HandoffNotFound`` if there is none with that id."""
        with unit_of_work(self._factory) as session:
            return _view(self._get(session, handoff_id))

    def record_csat(self, handoff_id: int, score: int) -> HandoffView:
        """Store the customer's 1–5 rating on the handoff and its Interaction."""
        if not isinstance(score, int) or not 1 <= score <= 5:
            raise InvalidInput("csat", "Please give a score from 1 to 5.")
        with unit_of_work(self._factory) as session:
            row = self._get(session, handoff_id)
            row.csat = score
            row.interaction.csat = score
            return _view(row)

    def list(self, states: tuple[str, ...] = LIVE_STATES) -> list[HandoffView]:
        """Handoffs in these states, oldest request first."""
        with unit_of_work(self._factory) as session:
            rows = session.execute(
                select(models.Handoff)
                .where(models.Handoff.state.in_(states))
                .order_by(models.Handoff.requested_at, models.Handoff.id)
            ).scalars()
            return [_view(row) for row in rows]

    @staticmethod
    def _live(session: Session, sender_id: str) -> models.Handoff | None:
        return session.execute(
            select(models.Handoff).where(
                models.Handoff.sender_id == sender_id, models.Handoff.state.in_(LIVE_STATES)
            )
        ).scalar_one_or_none()

    @staticmethod
    def _get(session: Session, handoff_id: int) -> models.Handoff:
        row = session.get(models.Handoff, handoff_id)
        if row is None:
            raise HandoffNotFound(f"No handoff #{handoff_id}.")
        return row
