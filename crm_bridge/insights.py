"""The workbench's Insights: KPIs of the conversations the CRM holds.

Every figure comes from SQL aggregates or narrow column selects (never whole ORM rows),
so a page over thousands of conversations stays fast. The docstrings are the contract
the documentation quotes.

A report's conversations are the Interactions whose ``started_at`` falls on one of the
UTC days ``start``..``end`` (both included) and, when the query names a channel, whose
channel is that one. A conversation is *finished* once ``closed``; until then it is
*open*, its outcome not final, and it stays out of the outcome rates.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import Date, Float, and_, case, cast, extract, func, literal, literal_column, select
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.types import Interval

from crm_bridge import models
from crm_bridge import settings as crm_settings
from crm_bridge.db import unit_of_work
from crm_bridge.gateway import Outcome
from crm_bridge.interaction_log import DialogueVocabulary
from crm_bridge.notifications import NOTIFICATION_OUTCOME

#: The charts of the Insights page, each available as CSV (``InsightsReport.csv``).
CHARTS = tuple("conversations outcomes rates handoff_wait csat first_reply top_intents".split())
OUTCOMES = frozenset(outcome.value for outcome in Outcome)
CSAT_SCORES = (1, 2, 3, 4, 5)
TOP_INTENTS = 10

Interaction = models.Interaction
Message = models.InteractionMessage


@dataclass(frozen=True)
class InsightsQuery:
    """Conversations started on the UTC days ``start``..``end`` (both included), of one
    channel when ``channel`` is given."""

    start: date
    end: date
    channel: str | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("the range ends before it starts")

    def days(self) -> list[date]:
        """Every day of the range, in order."""
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


@dataclass(frozen=True)
class DayCount:
    """Conversations started on ``day`` on ``channel`` (None: channel not known yet)."""

    day: date
    channel: str | None
    conversations: int


@dataclass(frozen=True)
class OutcomeCounts:
    """Finished conversations by their one, exclusive outcome, plus the open ones.

    A conversation's outcome is the most significant thing that happened in it
    (abandoned < resolved_by_bot < ticket_created < handed_off), so one handed off after
    a ticket was opened counts once, as handed_off.
    """

    resolved_by_bot: int = 0
    ticket_created: int = 0
    handed_off: int = 0
    abandoned: int = 0
    open: int = 0

    @property
    def finished(self) -> int:
        """Closed conversations: the denominator of containment and handoff rate."""
        return self.resolved_by_bot + self.ticket_created + self.handed_off + self.abandoned


@dataclass(frozen=True)
class Rate:
    """``numerator / denominator``; ``value`` is None when the denominator is 0."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        """The rate, or None when there is nothing to divide by."""
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True)
class HandoffWait:
    """Request-to-claim time of the handoffs of the report's conversations (open or
    finished; any state), in seconds to the millisecond: the median (of an even count,
    the mean of the middle two) and the 90th percentile (nearest rank: 90% of claimed
    handoffs waited at most this long) over the claimed ones, None when none was;
    ``unclaimed``: handoffs never claimed (queued, expired or cancelled)."""

    claimed: int
    unclaimed: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class Csat:
    """The scores (``Interaction.csat``, 1-5) of the report's conversations, open ones
    included: how many gave each score (all five keys present), how many in all, and
    their mean (None when none). Other values are ignored."""

    distribution: dict[int, int]
    count: int
    average: float | None


@dataclass(frozen=True)
class FirstReply:
    """Time to first reply. Per conversation: the ``sent_at`` of the first outbound line
    after the first inbound line, minus that inbound line's (a line logged at the same
    instant is no reply; "first" in transcript order, ``event_ts``, which the log writes
    from the same event timestamp as ``sent_at``). ``conversations``: how many have both
    lines; ``median_seconds``: the median over them, to the millisecond (None: none)."""

    conversations: int
    median_seconds: float | None


@dataclass(frozen=True)
class IntentCount:
    """Customer messages (inbound lines) classified as ``intent``."""

    intent: str
    messages: int


@dataclass(frozen=True)
class InsightsReport:
    """The KPIs of one :class:`InsightsQuery`, as of ``now``.

    * ``conversations``: per day and channel, every day of the range for every channel
      seen in it, zero-filled (with no conversation at all: each day once, with the
      query's channel, None when unfiltered).
    * ``containment`` = resolved_by_bot / finished conversations.
    * ``handoff_rate`` = handed_off / finished conversations.
    * ``durable_resolution`` and ``too_recent_to_tell``: see :func:`insights`.
    * ``fallback_rate`` = customer messages (inbound lines) whose intent is the fallback
      intent / all customer messages of the report's conversations (open ones included).
    * ``top_intents``: the 10 intents with the most customer messages, most first, then
      by name; messages without an intent left out.
    """

    query: InsightsQuery
    now: datetime
    conversations: tuple[DayCount, ...]
    outcomes: OutcomeCounts
    containment: Rate
    durable_resolution: Rate
    too_recent_to_tell: int
    handoff_rate: Rate
    handoff_wait: HandoffWait
    fallback_rate: Rate
    csat: Csat
    first_reply: FirstReply
    top_intents: tuple[IntentCount, ...]

    def csv(self, chart: str) -> str:
        """One chart's data (a name in ``CHARTS``) as CSV: a header row, then data rows.

        Integers as such, other numbers with 4 decimals, missing values (None) empty.
        """
        if chart not in CHARTS:
            raise ValueError(f"unknown chart {chart!r}; one of {', '.join(CHARTS)}")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([_cell(value) for value in row] for row in self._rows(chart))
        return out.getvalue()

    def _rows(self, chart: str) -> list[tuple[Any, ...]]:
        if chart == "conversations":
            days = ((r.day.isoformat(), r.channel, r.conversations) for r in self.conversations)
            return [("day", "channel", "conversations"), *days]
        if chart == "outcomes":
            names = ("resolved_by_bot", "ticket_created", "handed_off", "abandoned", "open")
            return [("outcome", "conversations"), *((n, getattr(self.outcomes, n)) for n in names)]
        if chart == "rates":
            rates = (
                ("containment", self.containment, None),
                ("durable_resolution", self.durable_resolution, self.too_recent_to_tell),
                ("handoff_rate", self.handoff_rate, None),
                ("fallback_rate", self.fallback_rate, None),
            )
            return [
                ("rate", "value", "numerator", "denominator", "too_recent_to_tell"),
                *((name, r.value, r.numerator, r.denominator, n) for name, r, n in rates),
            ]
        if chart == "handoff_wait":
            w = self.handoff_wait
            return [
                ("claimed", "unclaimed", "median_seconds", "p90_seconds"),
                (w.claimed, w.unclaimed, w.median_seconds, w.p90_seconds),
            ]
        if chart == "csat":
            return [
                ("score", "responses", "average"),
                *((score, self.csat.distribution[score], None) for score in CSAT_SCORES),
                ("all", self.csat.count, self.csat.average),
            ]
        if chart == "first_reply":
            reply = self.first_reply
            return [
                ("conversations", "median_seconds"),
                (reply.conversations, reply.median_seconds),
            ]
        return [("intent", "messages"), *((r.intent, r.messages) for r in self.top_intents)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def insights(
    session_or_factory: Session | sessionmaker,
    query: InsightsQuery,
    vocabulary: DialogueVocabulary | None = None,
    fallback_intent: str = "nlu_fallback",
    durable_hours: int = 72,
    now: datetime | None = None,
) -> InsightsReport:
    """The KPIs of the conversations ``query`` selects (definitions: the report's classes).

    **Durable resolution**: a resolved_by_bot conversation is durable unless the same
    customer (the same sender id, or the same contact when known) started another
    conversation, on any channel, in the range or not, open or not, within
    ``durable_hours`` after this one ended (``ended_at``, or ``started_at`` when unset)
    about one of its subjects: its intents minus ``vocabulary.unsummarised_intents`` and
    ``fallback_intent`` (with no subject left, it is durable).

    Whether a conversation that ended less than ``durable_hours`` before ``now`` will
    stay resolved cannot be told yet. Such resolved ones are ``too_recent_to_tell``, and
    the rate leaves out *every* finished conversation of that last window, not only the
    resolved ones (which would set recent failures against no recent successes and
    understate the rate): durable / finished conversations that ended at least
    ``durable_hours`` before ``now``.

    ``vocabulary`` defaults to the CRM settings' (``TRANSCRIPT_*``), ``now`` to the
    current time. A sessionmaker runs the queries in a unit of work (database failures
    raise ``CrmUnavailable``); a session is used as it is.
    """
    vocabulary = vocabulary or DialogueVocabulary.from_settings(crm_settings.load())
    now = now or models.utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    with _session(session_or_factory) as session:
        sql = _Dialect(session.get_bind().dialect.name)
        scope = _in_scope(query)
        settled_before = now - timedelta(hours=durable_hours)
        outcomes, settled, too_recent, csat = _tallies(session, scope, settled_before)
        ignored = vocabulary.unsummarised_intents | {fallback_intent}
        returned = _returned(session, sql, query, settled_before, durable_hours, ignored)
        intents = _intent_counts(session, scope)
        top = sorted((i, n) for i, n in intents.items() if i is not None)
        top.sort(key=lambda item: -item[1])  # stable: ties stay in name order
        return InsightsReport(
            query=query,
            now=now,
            conversations=_per_day(session, sql, query, scope),
            outcomes=outcomes,
            containment=Rate(outcomes.resolved_by_bot, outcomes.finished),
            durable_resolution=Rate(outcomes.resolved_by_bot - too_recent - returned, settled),
            too_recent_to_tell=too_recent,
            handoff_rate=Rate(outcomes.handed_off, outcomes.finished),
            handoff_wait=_handoff_wait(session, sql, scope),
            fallback_rate=Rate(intents.get(fallback_intent, 0), sum(intents.values())),
            csat=csat,
            first_reply=_first_reply(session, scope),
            top_intents=tuple(IntentCount(i, n) for i, n in top[:TOP_INTENTS]),
        )


def _session(session_or_factory: Session | sessionmaker) -> AbstractContextManager[Session]:
    if isinstance(session_or_factory, Session):
        return nullcontext(session_or_factory)
    return unit_of_work(session_or_factory)


def _in_scope(query: InsightsQuery, table: Any = Interaction) -> list[Any]:
    # A half-open range of instants keeps the filter a plain (indexable) comparison.
    start = datetime.combine(query.start, time(), timezone.utc)
    end = datetime.combine(query.end + timedelta(days=1), time(), timezone.utc)
    # A proactive message's Interaction is not a conversation the customer started.
    conditions = [
        table.started_at >= start,
        table.started_at < end,
        table.outcome != NOTIFICATION_OUTCOME,
    ]
    if query.channel is not None:
        conditions.append(table.channel == query.channel)
    return conditions


class _Dialect:
    """The few expressions SQLite and PostgreSQL spell differently."""

    def __init__(self, name: str) -> None:
        self.sqlite = name == "sqlite"

    def utc_day(self, column: Any) -> Any:
        if self.sqlite:  # UTC text
            return func.date(column)
        # A plain cast would take the day in the session's time zone.
        return cast(func.timezone(literal_column("'UTC'"), column), Date)

    def seconds_between(self, later: Any, earlier: Any) -> Any:
        if self.sqlite:
            return (func.julianday(later) - func.julianday(earlier)) * 86400.0
        return cast(extract("epoch", later - earlier), Float)

    def shifted(self, column: Any, seconds: int) -> Any:
        if self.sqlite:  # millisecond text: a bound to refine in Python, not an exact one
            return func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{seconds} seconds")
        return column + literal(timedelta(seconds=seconds), Interval())


def _per_day(
    session: Session, sql: _Dialect, query: InsightsQuery, scope: list[Any]
) -> tuple[DayCount, ...]:
    day = sql.utc_day(Interaction.started_at)
    rows = session.execute(
        select(day, Interaction.channel, func.count())
        .where(*scope)
        .group_by(day, Interaction.channel)
    )
    # SQLite's date() gives ISO text, PostgreSQL's cast a date.
    counts = {(d if isinstance(d, date) else date.fromisoformat(d), ch): n for d, ch, n in rows}
    channels = sorted({channel for _, channel in counts}, key=lambda c: (c is None, c or ""))
    return tuple(
        DayCount(d, channel, counts.get((d, channel), 0))
        for d in query.days()
        for channel in channels or [query.channel]
    )


def _tallies(
    session: Session, scope: list[Any], settled_before: datetime
) -> tuple[OutcomeCounts, int, int, Csat]:
    """In one pass: the outcome counts, the finished conversations whose durability window
    has elapsed, the resolved ones whose window has not, and the CSAT scores."""
    ended = func.coalesce(Interaction.ended_at, Interaction.started_at)
    settled = func.sum(case((ended <= settled_before, 1), else_=0))
    columns = (Interaction.closed, Interaction.outcome, Interaction.csat)
    rows = session.execute(select(*columns, func.count(), settled).where(*scope).group_by(*columns))
    counts = dict.fromkeys((*(o.value for o in Outcome), "open"), 0)
    scores = dict.fromkeys(CSAT_SCORES, 0)
    settled_finished = too_recent = 0
    for closed, outcome, csat, n, n_settled in rows:
        if csat in scores:
            scores[csat] += n
        if not closed:
            counts["open"] += n
        elif outcome in OUTCOMES:  # the only values the log writes
            counts[outcome] += n
            settled_finished += n_settled
            too_recent += (n - n_settled) if outcome == Outcome.RESOLVED_BY_BOT.value else 0
    rated = sum(scores.values())
    average = sum(score * n for score, n in scores.items()) / rated if rated else None
    return OutcomeCounts(**counts), settled_finished, too_recent, Csat(scores, rated, average)


def _returned(
    session: Session,
    sql: _Dialect,
    query: InsightsQuery,
    settled_before: datetime,
    durable_hours: int,
    ignored: frozenset[str],
) -> int:
    """Settled resolved_by_bot conversations whose customer came back about one of their
    subjects within the window (see :func:`insights`)."""
    first, later = aliased(Interaction), aliased(Interaction)
    ended = func.coalesce(first.ended_at, first.started_at)
    window = timedelta(hours=durable_hours)
    resolved = (
        *_in_scope(query, first),
        first.closed.is_(True),
        first.outcome == Outcome.RESOLVED_BY_BOT.value,
        ended <= settled_before,
    )
    # Each join is an equality on an indexed column, and the time bound (a second of
    # slack: SQLite's is approximate) leaves few candidate pairs to check exactly here.
    window_end = sql.shifted(ended, int(window.total_seconds()) + 1)
    same_sender = (later.sender_id == first.sender_id,)
    same_contact = (first.contact_id.is_not(None), later.contact_id == first.contact_id)
    returned: set[int] = set()
    for same_customer in (same_sender, same_contact):
        came_back = and_(
            *same_customer,
            later.id != first.id,
            later.started_at > ended,
            later.started_at <= window_end,
        )
        pairs = session.execute(
            select(first.id, ended, first.intents, later.started_at, later.intents)
            .join(later, came_back)
            .where(*resolved)
        )
        for first_id, first_ended, first_intents, started, later_intents in pairs:
            subjects = set(first_intents or ()) - ignored
            if started - first_ended <= window and subjects & set(later_intents or ()):
                returned.add(first_id)
    return len(returned)


def _intent_counts(session: Session, scope: list[Any]) -> dict[str | None, int]:
    """Customer messages (inbound lines) of the conversations, by intent (None included)."""
    # A join rather than IN (subquery) leaves SQLite free to scan the lines or probe them.
    rows = session.execute(
        select(Message.intent, func.count())
        .join(Interaction, Interaction.id == Message.interaction_id)
        .where(Message.direction == "inbound", *scope)
        .group_by(Message.intent)
    )
    return {intent: n for intent, n in rows}


def _handoff_wait(session: Session, sql: _Dialect, scope: list[Any]) -> HandoffWait:
    handoff = models.Handoff
    waits = (
        session.execute(
            select(sql.seconds_between(handoff.claimed_at, handoff.requested_at))
            .join(Interaction, Interaction.id == handoff.interaction_id)
            .where(*scope)
        )
        .scalars()
        .all()
    )
    # NULL: never claimed. Milliseconds: SQLite's julianday() is no more precise.
    claimed = sorted(round(float(wait), 3) for wait in waits if wait is not None)
    return HandoffWait(
        claimed=len(claimed),
        unclaimed=len(waits) - len(claimed),
        median_seconds=statistics.median(claimed) if claimed else None,
        p90_seconds=claimed[math.ceil(0.9 * len(claimed)) - 1] if claimed else None,
    )


def _first_reply(session: Session, scope: list[Any]) -> FirstReply:
    # event_ts is the indexed transcript order: two index probes per conversation cost
    # less than aggregating every line of every conversation.
    def first(direction: str, interaction_id: Any, after: Any = None) -> Any:
        line = aliased(Message)
        later = () if after is None else (line.event_ts > after,)
        return (
            select(line.event_ts)
            .where(line.interaction_id == interaction_id, line.direction == direction, *later)
            .order_by(line.event_ts)
            .limit(1)
            .scalar_subquery()
        )

    # DISTINCT (ids are unique anyway) keeps SQLite from flattening this subquery, which
    # would run the first probe twice; id order walks the transcript index in order.
    firsts = (
        select(Interaction.id, first("inbound", Interaction.id).label("at"))
        .where(*scope)
        .distinct()
        .order_by(Interaction.id)
        .subquery()
    )
    waits = session.execute(select(first("outbound", firsts.c.id, firsts.c.at) - firsts.c.at))
    # NULL: no reply (or no customer line). Milliseconds, like the handoff waits (epoch
    # floats carry sub-microsecond noise).
    seconds = [round(wait, 3) for wait in waits.scalars() if wait is not None]
    return FirstReply(len(seconds), statistics.median(seconds) if seconds else None)
