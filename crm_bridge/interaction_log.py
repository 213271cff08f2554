"""Turns Rasa's conversation events into Interactions with their full transcript.

Input: event dicts exactly as Rasa's event brokers publish them (``event.as_dict()``
plus ``sender_id``). One conversation session (from a ``session_started`` event to the
next one) is one Interaction. The log is idempotent: every transcript line remembers
the event it came from, so replaying events (after a crash, a redelivery, a consumer
restart) adds nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge import settings as crm_settings
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.gateway import Outcome
from crm_bridge.identity_links import find_identity
from crm_bridge.outbox_payloads import record_conversation
from crm_bridge.sql_gateway import get_or_create_interaction

logger = logging.getLogger(__name__)

TRANSCRIPT_EVENTS = frozenset({"user", "bot"})
# A customer message's metadata entry from the channels' inbound step: the text for the
# transcript (the customer's words, where Rasa got an intent shortcut or a cut text) and
# the detected language.
INBOUND_METADATA_KEY = "inbound"
IDLE_BATCH = 200  # interactions closed per call of close_idle (one short transaction)


def _names(csv: str) -> frozenset[str]:
    return frozenset(name.strip() for name in csv.split(",") if name.strip())


@dataclass(frozen=True)
class DialogueVocabulary:
    """The few names of the assistant's dialogue the log reads: the log itself knows no
    intent, slot or response (they are configuration: ``TRANSCRIPT_*`` settings)."""

    #: The slot in which actions report the outcome (``Outcome`` values).
    outcome_slot: str = ""
    #: A customer who ends with these has been helped, even if no action reported it.
    closing_intents: frozenset[str] = frozenset()
    #: Bot answers whose response name starts so resolve the question (e.g. FAQ answers).
    resolving_responses: tuple[str, ...] = ()
    #: Intents that say nothing about the conversation's subject (not in the summary).
    unsummarised_intents: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: crm_settings.CrmSettings) -> DialogueVocabulary:
        """The vocabulary the CRM settings configure."""
        return cls(
            outcome_slot=settings.outcome_slot,
            closing_intents=_names(settings.closing_intents),
            resolving_responses=tuple(sorted(_names(settings.resolving_responses))),
            unsummarised_intents=_names(settings.unsummarised_intents),
        )


class MalformedEvent(ValueError):
    """An event without the fields every Rasa event has (sender_id, event, timestamp)."""


def event_key(sender_id: str, event: Mapping[str, Any]) -> str:
    """A stable identity for one event: same event, same key, whoever replays it."""
    raw = "|".join(
        (sender_id, repr(float(event["timestamp"])), str(event["event"]), str(event.get("text")))
    )
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def _validated(event: Any) -> tuple[str, str, float]:
    if not isinstance(event, Mapping):
        raise MalformedEvent("not an object")
    sender, kind, ts = event.get("sender_id"), event.get("event"), event.get("timestamp")
    if not isinstance(sender, str) or not sender or not isinstance(kind, str):
        raise MalformedEvent("missing sender_id or event")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise MalformedEvent("missing timestamp")
    return sender, kind, float(ts)


class InteractionLog:
    """Writes conversation events to the CRM (one transaction per batch).

    With ``outbox_backend`` naming a remote CRM (``CRM_BACKEND``), each Interaction with
    a contact that a new session closes is recorded in its outbox, transcript included,
    in the same transaction.
    """

    def __init__(
        self,
        url_or_factory: str | sessionmaker,
        vocabulary: DialogueVocabulary | None = None,
        outbox_backend: str | None = None,
    ) -> None:
        self._factory = (
            session_factory(url_or_factory) if isinstance(url_or_factory, str) else url_or_factory
        )
        self.vocabulary = vocabulary or DialogueVocabulary.from_settings(crm_settings.load())
        self.outbox_backend = outbox_backend

    def record_events(self, events: Sequence[Mapping[str, Any]] | Iterable[Any]) -> int:
        """Record a batch of events; returns how many transcript lines were added.

        Malformed events are skipped with a warning (their content is not logged).
        Raises :class:`crm_bridge.errors.CrmUnavailable` when the database is down, in
        which case nothing of the batch was written and it can be retried as a whole.
        """
        added = 0
        with unit_of_work(self._factory) as session:
            touched: dict[int, models.Interaction] = {}
            for event in events:
                try:
                    sender, kind, ts = _validated(event)
                except MalformedEvent as error:
                    logger.warning("Skipping a malformed event (%s)", error)
                    continue
                interaction, was_added = self._apply(session, event, sender, kind, ts)
                added += was_added
                if interaction is not None:
                    touched[interaction.id] = interaction
            for interaction in touched.values():
                refresh_outcome_and_summary(session, interaction, self.vocabulary)
        return added

    def _apply(
        self, session: Session, event: Mapping[str, Any], sender: str, kind: str, ts: float
    ) -> tuple[models.Interaction | None, int]:
        if kind == "session_started":
            interaction = get_or_create_interaction(session, sender, ts)
            close_earlier_sessions(session, interaction, self.outbox_backend)
            return interaction, 0
        vocabulary = self.vocabulary
        if (
            kind == "slot"
            and vocabulary.outcome_slot
            and event.get("name") == vocabulary.outcome_slot
        ):
            running = current_interaction(session, sender, ts)
            if running is not None:
                report_outcome(running, event.get("value"))
            return running, 0
        if kind not in TRANSCRIPT_EVENTS:
            return None, 0

        interaction = current_interaction(session, sender, ts) or get_or_create_interaction(
            session, sender, ts
        )
        key = event_key(sender, event)
        if session.execute(
            select(models.InteractionMessage.id).where(models.InteractionMessage.event_key == key)
        ).first():
            return interaction, 0
        message = transcript_line(event, kind, ts, key)
        message.interaction_id = interaction.id
        try:
            with session.begin_nested():
                session.add(message)
                session.flush()
        except IntegrityError:
            return interaction, 0  # another writer recorded the same event meanwhile
        when = _utc(ts)
        if interaction.ended_at is None or when > interaction.ended_at:
            interaction.ended_at = when
        if kind == "user":
            note_customer_message(session, interaction, event, sender)
        elif vocabulary.resolving_responses and str(
            (event.get("metadata") or {}).get("utter_action") or ""
        ).startswith(vocabulary.resolving_responses):
            report_outcome(interaction, Outcome.RESOLVED_BY_BOT.value)
        return interaction, 1


def transcript_line(
    event: Mapping[str, Any], kind: str, ts: float, key: str
) -> models.InteractionMessage:
    """The InteractionMessage for a ``user`` or ``bot`` event."""
    text = event.get("text")
    line = models.InteractionMessage(
        event_key=key,
        direction="inbound" if kind == "user" else "outbound",
        author="customer" if kind == "user" else "bot",
        text=text if isinstance(text, str) else "",
        event_ts=ts,
        sent_at=_utc(ts),
    )
    if kind == "user":
        line.intent, line.confidence = intent_of(event)
        inbound = (event.get("metadata") or {}).get(INBOUND_METADATA_KEY)
        if isinstance(inbound, Mapping):
            if isinstance(inbound.get("text"), str):
                line.text = inbound["text"]
            if isinstance(inbound.get("language"), str):
                line.language = inbound["language"][:8]
    else:
        agent = (event.get("metadata") or {}).get("agent")
        if isinstance(agent, Mapping) and agent.get("name"):
            line.author = f"agent:{agent['name']}"
        data = event.get("data") or {}
        buttons = data.get("buttons") if isinstance(data, Mapping) else None
        line.buttons = list(buttons) if isinstance(buttons, list) and buttons else None
    return line


def intent_of(event: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """The intent name and confidence of a ``user`` event (None where absent or odd)."""
    parse_data = event.get("parse_data")
    intent = parse_data.get("intent") if isinstance(parse_data, Mapping) else None
    if not isinstance(intent, Mapping):
        return None, None
    name = intent.get("name") if isinstance(intent.get("name"), str) else None
    confidence = intent.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        return name, None
    return name, float(confidence)


def current_interaction(session: Session, sender: str, ts: float) -> models.Interaction | None:
    """The Interaction whose session was running for ``sender`` at time ``ts``."""
    return session.execute(
        select(models.Interaction)
        .where(models.Interaction.sender_id == sender, models.Interaction.started_at <= _utc(ts))
        .order_by(models.Interaction.started_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def close_earlier_sessions(
    session: Session, interaction: models.Interaction, outbox_backend: str | None = None
) -> None:
    """A new session ends the sender's earlier ones (each goes to the outbox, if any)."""
    earlier = session.execute(
        select(models.Interaction).where(
            models.Interaction.sender_id == interaction.sender_id,
            models.Interaction.started_at < interaction.started_at,
            models.Interaction.closed.is_(False),
        )
    ).scalars()
    for previous in earlier:
        previous.closed = True
        record_conversation(session, outbox_backend, previous)


def close_idle(factory: sessionmaker, idle_minutes: int, outbox_backend: str | None) -> int:
    """Close the Interactions idle for ``idle_minutes`` (``SESSION_TIMEOUT_MINUTES``) and
    record each in the outbox; how many. The outbox worker runs it before each round:
    a customer who never writes again starts no new session, and their conversation
    must still reach the remote CRM."""
    cutoff = datetime.now(timezone.utc) - timedelta(minutes=idle_minutes)
    with unit_of_work(factory) as session:
        idle = session.execute(
            select(models.Interaction)
            .where(models.Interaction.closed.is_(False), models.Interaction.ended_at < cutoff)
            .order_by(models.Interaction.id)
            .limit(IDLE_BATCH)
        ).scalars()
        closed = 0
        for interaction in idle:
            interaction.closed = True
            record_conversation(session, outbox_backend, interaction)
            closed += 1
        return closed


def report_outcome(interaction: models.Interaction, value: Any) -> None:
    """Keep the most significant outcome reported in the session."""
    try:
        outcome = Outcome(value)
    except ValueError:
        return
    current = interaction.reported_outcome
    if current is None or outcome.rank > Outcome(current).rank:
        interaction.reported_outcome = outcome.value


def note_customer_message(
    session: Session, interaction: models.Interaction, event: Mapping[str, Any], sender: str
) -> None:
    """Channel, contact and intents learnt from a customer message."""
    channel = event.get("input_channel")
    if isinstance(channel, str) and channel and not interaction.channel:
        interaction.channel = channel
    if interaction.contact_id is None and interaction.channel:
        identity = find_identity(session, interaction.channel, sender)
        interaction.contact_id = identity.contact_id if identity else None
    intent, _ = intent_of(event)
    if intent and intent not in (interaction.intents or []):
        # Reassign (not append) so SQLAlchemy notices the JSON column changed.
        interaction.intents = [*(interaction.intents or []), intent]


def refresh_outcome_and_summary(
    session: Session, interaction: models.Interaction, vocabulary: DialogueVocabulary
) -> None:
    """Derive the outcome and the one-line summary from what the session holds.

    The most significant of these wins: what actions reported; ``handed_off`` when the
    session was handed to a person; ``ticket_created`` when
    the session produced a ticket or a return; ``resolved_by_bot`` when the customer's
    last message was a thank-you or goodbye; otherwise ``abandoned``.
    """
    session.flush()
    candidates = [Outcome.ABANDONED]
    if interaction.reported_outcome:
        candidates.append(Outcome(interaction.reported_outcome))
    if _count(session, models.Ticket, interaction) or _count(
        session, models.ReturnRequest, interaction
    ):
        candidates.append(Outcome.TICKET_CREATED)
    if _count(session, models.Handoff, interaction):
        candidates.append(Outcome.HANDED_OFF)
    last_intent = session.execute(
        select(models.InteractionMessage.intent)
        .where(
            models.InteractionMessage.interaction_id == interaction.id,
            models.InteractionMessage.direction == "inbound",
        )
        .order_by(models.InteractionMessage.event_ts.desc())
        .limit(1)
    ).scalar_one_or_none()
    if last_intent in vocabulary.closing_intents:
        candidates.append(Outcome.RESOLVED_BY_BOT)
    interaction.outcome = max(candidates, key=lambda outcome: outcome.rank).value
    interaction.summary = summarise(session, interaction, vocabulary.unsummarised_intents)


def _count(session: Session, model: Any, interaction: models.Interaction) -> int:
    result: int = session.execute(
        select(func.count()).select_from(model).where(model.interaction_id == interaction.id)
    ).scalar_one()
    return result


def summarise(
    session: Session, interaction: models.Interaction, left_out: frozenset[str] = frozenset()
) -> str:
    """E.g. ``order_status, start_return; 1 return; 8 messages`` (``left_out`` intents
    not named)."""
    intents = [intent for intent in interaction.intents or [] if intent not in left_out]
    parts = [", ".join(intents) or "no intent"]
    for label, model in (("ticket", models.Ticket), ("return", models.ReturnRequest)):
        n = _count(session, model, interaction)
        if n:
            parts.append(f"{n} {label}{'s' if n > 1 else ''}")
    parts.append(f"{_count(session, models.InteractionMessage, interaction)} messages")
    return "; ".join(parts)
