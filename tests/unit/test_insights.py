"""Insights KPIs: definitions, edge cases, and CSVs checked against plain ORM loops."""

from __future__ import annotations

import csv
import io
import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.insights import (
    CHARTS,
    DayCount,
    HandoffWait,
    InsightsQuery,
    InsightsReport,
    IntentCount,
    OutcomeCounts,
    Rate,
    insights,
)
from crm_bridge.interaction_log import DialogueVocabulary

UTC = timezone.utc
VOCABULARY = DialogueVocabulary(unsummarised_intents=frozenset({"greet", "thank", "goodbye"}))
WEEK = InsightsQuery(date(2026, 3, 2), date(2026, 3, 8))
LATER = datetime(2026, 4, 1, tzinfo=UTC)  # every conversation of WEEK is long settled
_keys = itertools.count()


def at(day: int, hour: int = 9, minute: int = 0, second: float = 0) -> datetime:
    """An instant in March 2026 (UTC)."""
    whole = int(second)
    micro = round((second - whole) * 1_000_000)
    return datetime(2026, 3, day, hour, minute, whole, micro, tzinfo=UTC)


@pytest.fixture
def insights_url(crm_url: str) -> str:  # the PostgreSQL suite overrides this
    return crm_url


@pytest.fixture
def factory(insights_url: str) -> sessionmaker:
    return session_factory(insights_url)


def contact_id(factory: sessionmaker, email: str) -> int:
    with factory() as session:
        found = session.execute(select(models.Contact.id).where(models.Contact.email == email))
        return int(found.scalar_one())


def add(
    session: Session,
    sender: str,
    started: datetime,
    outcome: str = "abandoned",
    *,
    minutes: float = 10,
    closed: bool = True,
    channel: str | None = "rest",
    intents: Sequence[str] = (),
    contact: int | None = None,
    csat: int | None = None,
    lines: Sequence[tuple[float, str, str | None]] = (),
    ended: bool = True,
) -> models.Interaction:
    """One conversation; ``lines`` are (seconds after start, "in"/"out", intent)."""
    row = models.Interaction(
        sender_id=sender,
        session_key=str(next(_keys)),
        channel=channel,
        contact_id=contact,
        started_at=started,
        ended_at=started + timedelta(minutes=minutes) if ended else None,
        closed=closed,
        outcome=outcome,
        csat=csat,
        intents=list(intents),
    )
    session.add(row)
    session.flush()
    for offset, direction, intent in lines:
        sent = started + timedelta(seconds=offset)
        inbound = direction == "in"
        session.add(
            models.InteractionMessage(
                interaction_id=row.id,
                event_key=f"k{next(_keys)}",
                direction="inbound" if inbound else "outbound",
                author="customer" if inbound else "bot",
                text="…",
                intent=intent,
                event_ts=sent.timestamp(),
                sent_at=sent,
            )
        )
    return row


def handoff(
    session: Session, row: models.Interaction, requested: datetime, wait: float | None
) -> None:
    session.add(
        models.Handoff(
            interaction_id=row.id,
            sender_id=row.sender_id,
            channel=row.channel or "rest",
            reason="customer_request",
            state="closed" if wait is not None else "queued",
            requested_at=requested,
            claimed_at=requested + timedelta(seconds=wait) if wait is not None else None,
        )
    )


def report(
    factory: sessionmaker,
    query: InsightsQuery = WEEK,
    now: datetime = LATER,
    fallback_intent: str = "nlu_fallback",
) -> InsightsReport:
    return insights(factory, query, VOCABULARY, fallback_intent=fallback_intent, now=now)


def test_each_conversation_has_one_outcome_and_open_ones_stay_out_of_rates(
    factory: sessionmaker,
) -> None:
    with unit_of_work(factory) as session:
        add(session, "web-1", at(2), "resolved_by_bot")
        ticketed = add(session, "web-2", at(3), "ticket_created")
        session.add(models.Ticket(category="other", subject="s", interaction_id=ticketed.id))
        # Handed off after a ticket was opened: once, as handed_off.
        both = add(session, "web-3", at(4), "handed_off")
        session.add(models.Ticket(category="other", subject="s", interaction_id=both.id))
        handoff(session, both, at(4, 9, 5), 60)
        add(session, "web-4", at(5), "abandoned")
        add(session, "web-5", at(6), "resolved_by_bot", closed=False, ended=False)

    result = report(factory)

    assert result.outcomes == OutcomeCounts(
        resolved_by_bot=1, ticket_created=1, handed_off=1, abandoned=1, open=1
    )
    assert result.outcomes.finished == 4
    assert result.containment == Rate(1, 4) and result.containment.value == 0.25
    assert result.handoff_rate == Rate(1, 4)
    assert result.durable_resolution == Rate(1, 4)
    assert sum(row.conversations for row in result.conversations) == 5


def test_durable_resolution(factory: sessionmaker) -> None:
    alice = contact_id(factory, "alice@example.com")
    now = at(10, 12)  # conversations that ended after 7 March 12:00 are too recent
    with unit_of_work(factory) as session:
        # Back within 72 h about the same subject, on another channel: not durable.
        add(
            session,
            "demo-alice",
            at(2),
            "resolved_by_bot",
            contact=alice,
            intents=["greet", "order_status"],
        )
        add(session, "tg-alice", at(3), channel="telegram", contact=alice, intents=["order_status"])
        # Back within 72 h about something else (greet is no subject): durable.
        add(session, "anon-1", at(2, 10), "resolved_by_bot", intents=["greet", "start_return"])
        add(session, "anon-1", at(3, 10), "ticket_created", intents=["greet", "faq_shipping"])
        # Back about the same subject, but more than 72 h after the end: durable.
        add(session, "anon-2", at(2, 11), "resolved_by_bot", intents=["order_status"])
        add(session, "anon-2", at(5, 11, 11), intents=["order_status"])
        add(session, "web-9", at(3), "ticket_created")
        # Resolved, but 72 h have not passed: too recent to tell; like every conversation
        # that ended in the last 72 h, left out of the rate.
        add(session, "anon-3", at(8, 10), "resolved_by_bot", intents=["order_status"])
        add(session, "anon-4", at(8, 11))

    result = report(factory, now=now)

    assert result.too_recent_to_tell == 1
    assert result.durable_resolution == Rate(2, 7)
    assert result.containment == Rate(4, 9)


def test_the_window_runs_from_the_end_to_72_hours_later_whatever_the_range(
    factory: sessionmaker,
) -> None:
    alice = contact_id(factory, "alice@example.com")
    with unit_of_work(factory) as session:
        # Back exactly 72 h after the end, on a day outside the report's range: a return.
        first = add(session, "anon-1", at(2, 9), "resolved_by_bot", intents=["order_status"])
        assert first.ended_at is not None
        add(session, "anon-1", first.ended_at + timedelta(hours=72), intents=["order_status"])
        add(session, "anon-2", at(2, 10), "resolved_by_bot", intents=["cancel_order"])
        add(session, "anon-2", at(2, 10, 10, 1), intents=["cancel_order"])  # 1 s after the end
        # A conversation started while this one was running is no return.
        add(
            session,
            "demo-alice",
            at(2, 11),
            "resolved_by_bot",
            contact=alice,
            intents=["start_return"],
        )
        add(session, "tg-alice", at(2, 11, 5), contact=alice, intents=["start_return"])

    result = report(factory, InsightsQuery(date(2026, 3, 2), date(2026, 3, 2)))

    assert result.outcomes.resolved_by_bot == 3 and result.outcomes.finished == 5
    assert result.durable_resolution == Rate(1, 5)


def test_the_same_customer_is_the_same_sender_or_the_same_contact(
    factory: sessionmaker,
) -> None:
    bob = contact_id(factory, "bob@example.com")
    with unit_of_work(factory) as session:
        add(session, "demo-bob", at(2), "resolved_by_bot", contact=bob, intents=["cancel_order"])
        add(session, "demo-bob", at(3), intents=["cancel_order"])  # not identified (yet)
        add(session, "tg-bob", at(2), "resolved_by_bot", contact=bob, intents=["start_return"])
        add(session, "wa-bob", at(3, 10), contact=bob, intents=["start_return"])
        add(session, "anon-1", at(2), "resolved_by_bot", intents=["start_return"])
        add(session, "anon-2", at(3), intents=["start_return"])  # someone else

    assert report(factory).durable_resolution == Rate(1, 6)


def test_returns_about_the_fallback_intent_say_nothing(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        add(session, "anon-1", at(2), "resolved_by_bot", intents=["nlu_fallback"])
        add(session, "anon-1", at(3), intents=["nlu_fallback"])

    assert report(factory).durable_resolution == Rate(1, 2)
    unusual = report(factory, fallback_intent="out_of_scope")
    assert unusual.durable_resolution == Rate(0, 2)


def test_channel_filter(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        add(
            session,
            "web-1",
            at(2),
            "resolved_by_bot",
            channel="rest",
            csat=5,
            lines=[(1, "in", "order_status")],
        )
        add(
            session,
            "tg-1",
            at(3),
            "handed_off",
            channel="telegram",
            csat=2,
            lines=[(1, "in", "nlu_fallback"), (4, "out", None)],
        )
        add(session, "tg-2", at(3, 12), "resolved_by_bot", channel="telegram")

    result = report(factory, InsightsQuery(WEEK.start, WEEK.end, channel="telegram"))

    assert result.conversations == tuple(
        DayCount(day, "telegram", 2 if day == date(2026, 3, 3) else 0) for day in WEEK.days()
    )
    assert result.outcomes == OutcomeCounts(resolved_by_bot=1, handed_off=1)
    assert result.fallback_rate == Rate(1, 1)
    assert result.csat.distribution == {1: 0, 2: 1, 3: 0, 4: 0, 5: 0}
    assert result.first_reply.conversations == 1


def test_every_day_of_the_range_for_every_channel(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        add(session, "web-1", at(2), channel="rest")
        add(session, "tg-1", at(4), channel="telegram")
        add(session, "new-1", at(4, 10), channel=None)  # no customer message yet

    rows = report(factory).conversations

    assert len(rows) == 7 * 3
    assert [(r.day, r.channel, r.conversations) for r in rows[:3]] == [
        (date(2026, 3, 2), "rest", 1),
        (date(2026, 3, 2), "telegram", 0),
        (date(2026, 3, 2), None, 0),
    ]
    assert {(r.day, r.channel) for r in rows if r.conversations} == {
        (date(2026, 3, 2), "rest"),
        (date(2026, 3, 4), "telegram"),
        (date(2026, 3, 4), None),
    }


def test_the_range_is_whole_utc_days_both_ends_included(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        add(session, "a", at(1, 23, 59, 59.999), "resolved_by_bot")
        add(session, "b", at(2, 0), "resolved_by_bot")
        add(session, "c", at(8, 23, 59, 59.999), "abandoned")
        add(session, "d", at(9, 0), "abandoned")
        # 23:30 in New York on 8 March is already 9 March in UTC.
        add(session, "e", datetime(2026, 3, 8, 23, 30, tzinfo=timezone(timedelta(hours=-5))))

    result = report(factory)

    assert [r.conversations for r in result.conversations] == [1, 0, 0, 0, 0, 0, 1]
    assert result.outcomes == OutcomeCounts(resolved_by_bot=1, abandoned=1)


def test_an_empty_range_divides_by_nothing(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        add(session, "web-1", at(20), "resolved_by_bot", csat=4, lines=[(1, "in", "greet")])

    result = report(factory)

    assert result.conversations == tuple(DayCount(day, None, 0) for day in WEEK.days())
    assert result.outcomes == OutcomeCounts()
    for rate in (result.containment, result.durable_resolution, result.handoff_rate):
        assert rate == Rate(0, 0) and rate.value is None
    assert result.fallback_rate.value is None
    assert result.handoff_wait == HandoffWait(0, 0, None, None)
    assert result.csat.count == 0 and result.csat.average is None
    assert result.csat.distribution == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
    assert result.first_reply.median_seconds is None and result.top_intents == ()
    assert result.csv("rates").splitlines()[1] == "containment,,0,0,"
    assert result.csv("csat").splitlines()[-1] == "all,0,"


def test_csat_distribution(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        for n, score in enumerate([5, 5, 4, 1, None, 3]):
            add(session, f"web-{n}", at(3, 9 + n), "handed_off", csat=score, closed=n != 5)

    csat = report(factory).csat

    assert csat.distribution == {1: 1, 2: 0, 3: 1, 4: 1, 5: 2}  # the open one's score counts
    assert csat.count == 5 and csat.average == pytest.approx(3.6)
    assert report(factory).csv("csat") == "score,responses,average\n" + (
        "1,1,\n2,0,\n3,1,\n4,1,\n5,2,\nall,5,3.6000\n"
    )


def test_handoff_wait(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        for n, wait in enumerate([40, 10, 100, 30, 20, None]):
            row = add(session, f"web-{n}", at(4, 9 + n), "handed_off")
            handoff(session, row, at(4, 9 + n, 2), wait)
        outside = add(session, "web-x", at(12), "handed_off")
        handoff(session, outside, at(12, 9, 2), 5000)

    assert report(factory).handoff_wait == HandoffWait(
        claimed=5, unclaimed=1, median_seconds=30.0, p90_seconds=100.0
    )


def test_fallback_rate_and_top_intents(factory: sessionmaker) -> None:
    intents = [f"intent_{n:02d}" for n in range(12)]
    with unit_of_work(factory) as session:
        lines: list[tuple[float, str, str | None]] = [
            (float(k), "in", name) for k, name in enumerate(intents)
        ]
        lines += [(20, "in", "intent_05"), (21, "in", "intent_05"), (22, "in", "intent_11")]
        lines += [(23, "in", "nlu_fallback"), (24, "in", None), (25, "out", None)]
        add(session, "web-1", at(5), lines=lines)

    result = report(factory)

    assert result.fallback_rate == Rate(1, 17)
    assert result.top_intents[:3] == (
        IntentCount("intent_05", 3),
        IntentCount("intent_11", 2),
        IntentCount("intent_00", 1),
    )
    assert len(result.top_intents) == 10
    assert all(row.intent for row in result.top_intents)


def test_median_time_to_first_reply(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        # The bot's greeting comes before the customer wrote: not a reply.
        add(session, "web-1", at(2), lines=[(0, "out", None), (5, "in", "greet"), (8, "out", None)])
        add(
            session,
            "web-2",
            at(2, 10),
            lines=[(0, "in", "greet"), (0.5, "in", "x"), (2.25, "out", None), (9, "out", None)],
        )
        add(session, "web-3", at(2, 11), lines=[(0, "in", "greet")])  # never answered
        add(session, "web-4", at(2, 12), lines=[(0, "out", None)])  # never wrote
        # A line logged at the very instant the customer wrote is no reply to it.
        add(
            session,
            "web-5",
            at(2, 13),
            lines=[(0, "in", "greet"), (0, "out", None), (60, "out", None)],
        )

    first_reply = report(factory).first_reply

    assert first_reply.conversations == 3
    assert first_reply.median_seconds == pytest.approx(3.0)


def test_a_session_can_be_given_and_arguments_are_checked(factory: sessionmaker) -> None:
    with unit_of_work(factory) as session:
        add(session, "web-1", at(2), "resolved_by_bot")
    with factory() as session:
        assert insights(session, WEEK, VOCABULARY, now=LATER).outcomes.resolved_by_bot == 1
    with pytest.raises(ValueError):
        InsightsQuery(date(2026, 3, 8), date(2026, 3, 2))
    with pytest.raises(ValueError):
        report(factory).csv("pie")
    with pytest.raises(ValueError):
        report(factory, now=datetime(2026, 4, 1))  # naive


def test_the_default_vocabulary_comes_from_the_settings(
    factory: sessionmaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with unit_of_work(factory) as session:
        add(session, "anon-1", at(2), "resolved_by_bot", intents=["greet", "order_status"])
        add(session, "anon-1", at(3), intents=["greet"])
    monkeypatch.setenv("TRANSCRIPT_UNSUMMARISED_INTENTS", "nlu_fallback")
    assert insights(factory, WEEK, now=LATER).durable_resolution == Rate(0, 2)
    monkeypatch.setenv("TRANSCRIPT_UNSUMMARISED_INTENTS", "greet")
    assert insights(factory, WEEK, now=LATER).durable_resolution == Rate(1, 2)


# --- The CSVs against the CRM's rows, recomputed by plain loops over ORM objects --------

POOL = ["greet", "order_status", "start_return", "faq_shipping", "cancel_order", "thank"]


def seed_month(factory: sessionmaker) -> None:
    """Sixty varied conversations around the first week of March."""
    rng = random.Random(20260302)
    contacts = [contact_id(factory, e) for e in ("alice@example.com", "bob@example.com")]
    senders = [(f"s{n}", rng.choice([*contacts, None, None])) for n in range(12)]
    outcomes = ["abandoned", "resolved_by_bot", "resolved_by_bot", "ticket_created", "handed_off"]
    with unit_of_work(factory) as session:
        for n in range(60):
            sender, contact = rng.choice(senders)
            contact = contact if rng.random() < 0.8 else None  # not identified yet
            started = datetime(2026, 2, 27, tzinfo=UTC) + timedelta(minutes=rng.randrange(15_000))
            lines, offset = [], 0.0
            for _ in range(rng.randrange(0, 7)):
                offset += rng.choice([0.5, 1, 2.5, 30, 95])
                inbound = rng.random() < 0.55
                intent = rng.choice([*POOL, "nlu_fallback", None]) if inbound else None
                lines.append((offset, "in" if inbound else "out", intent))
            outcome = rng.choice(outcomes)
            row = add(
                session,
                sender,
                started,
                outcome,
                minutes=rng.choice([1, 5, 40]),
                closed=n % 9 != 0,
                channel=rng.choice(["rest", "rest", "telegram", None]),
                intents=rng.sample(POOL, rng.randrange(0, 3)),
                contact=contact,
                csat=rng.choice([None, None, 1, 2, 3, 4, 5]),
                lines=lines,
                ended=n % 13 != 0,
            )
            if outcome == "handed_off":
                wait = rng.choice([None, 12, 45.5, 300, 900])
                handoff(session, row, started + timedelta(seconds=30), wait)


def expected_rows(
    factory: sessionmaker, query: InsightsQuery, now: datetime, hours: int = 72
) -> dict[str, list[list[object]]]:
    """Every chart's rows, computed the slow, obvious way."""
    with factory() as session:
        everyone = list(session.execute(select(models.Interaction)).scalars())
        chosen = [
            i
            for i in everyone
            if query.start <= i.started_at.date() <= query.end
            and (query.channel is None or i.channel == query.channel)
        ]
        lines = {i.id: sorted(i.messages, key=lambda m: m.sent_at) for i in chosen}
        handoffs = [h for i in chosen for h in i.handoffs]

    channels = sorted({i.channel for i in chosen}, key=lambda c: (c is None, c or ""))
    conversations = [
        [
            day.isoformat(),
            channel or "",
            sum(i.started_at.date() == day and i.channel == channel for i in chosen),
        ]
        for day in query.days()
        for channel in channels or [query.channel]
    ]
    finished = [i for i in chosen if i.closed]
    tally = Counter(i.outcome for i in finished)
    names = ["resolved_by_bot", "ticket_created", "handed_off", "abandoned"]
    outcomes = [[name, tally[name]] for name in names] + [["open", len(chosen) - len(finished)]]

    window = timedelta(hours=hours)

    def end(i: models.Interaction) -> datetime:
        return i.ended_at or i.started_at

    settled = [i for i in finished if end(i) + window <= now]
    durable = 0
    for i in settled:
        if i.outcome != "resolved_by_bot":
            continue
        subjects = set(i.intents) - {"greet", "thank", "goodbye", "nlu_fallback"}
        came_back = any(
            other.id != i.id
            and (
                other.sender_id == i.sender_id
                or (i.contact_id and other.contact_id == i.contact_id)
            )
            and end(i) < other.started_at <= end(i) + window
            and subjects & set(other.intents)
            for other in everyone
        )
        durable += not came_back
    too_recent = sum(i.outcome == "resolved_by_bot" for i in finished if i not in settled)
    customer = [m for i in chosen for m in lines[i.id] if m.direction == "inbound"]
    fallbacks = sum(m.intent == "nlu_fallback" for m in customer)

    def rate(name: str, num: int, den: int, extra: object = None) -> list[object]:
        return [name, num / den if den else None, num, den, extra]

    rates = [
        rate("containment", tally["resolved_by_bot"], len(finished)),
        rate("durable_resolution", durable, len(settled), too_recent),
        rate("handoff_rate", tally["handed_off"], len(finished)),
        rate("fallback_rate", fallbacks, len(customer)),
    ]
    waits = sorted(
        (h.claimed_at - h.requested_at).total_seconds() for h in handoffs if h.claimed_at
    )
    handoff_wait = [
        len(waits),
        len(handoffs) - len(waits),
        statistics.median(waits) if waits else None,
        waits[math.ceil(0.9 * len(waits)) - 1] if waits else None,
    ]
    scores = [i.csat for i in chosen if i.csat]
    csat: list[list[object]] = [[s, scores.count(s), None] for s in range(1, 6)]
    csat.append(["all", len(scores), sum(scores) / len(scores) if scores else None])
    replies = []
    for i in chosen:
        first_in = next((m for m in lines[i.id] if m.direction == "inbound"), None)
        reply = first_in and next(
            (m for m in lines[i.id] if m.direction == "outbound" and m.sent_at > first_in.sent_at),
            None,
        )
        if first_in and reply:
            replies.append((reply.sent_at - first_in.sent_at).total_seconds())
    intents = Counter(m.intent for m in customer if m.intent)
    top = sorted(intents.items(), key=lambda item: (-item[1], item[0]))[:10]
    return {
        "conversations": conversations,
        "outcomes": outcomes,
        "rates": rates,
        "handoff_wait": [handoff_wait],
        "csat": csat,
        "first_reply": [[len(replies), statistics.median(replies) if replies else None]],
        "top_intents": [list(row) for row in top],
    }


def parsed(text: str) -> list[list[object]]:
    """CSV data rows with numbers as floats and empty fields as None."""
    rows = list(csv.reader(io.StringIO(text)))[1:]

    def value(cell: str) -> object:
        if cell == "":
            return None
        try:
            return float(cell)
        except ValueError:
            return cell

    return [[value(cell) for cell in row] for row in rows]


def same(row: list[object]) -> list[object]:
    """Expected cells as the CSV parser gives them back (4-decimal tolerance for floats)."""
    out: list[object] = []
    for cell in row:
        if isinstance(cell, bool) or cell is None:
            out.append(cell)
        elif isinstance(cell, (int, float)):
            out.append(pytest.approx(float(cell), abs=6e-5))
        else:
            out.append(cell or None)
    return out


@pytest.mark.parametrize(
    "query",
    [
        InsightsQuery(date(2026, 3, 1), date(2026, 3, 7)),
        InsightsQuery(date(2026, 3, 2), date(2026, 3, 5), channel="telegram"),
        InsightsQuery(date(2026, 2, 20), date(2026, 3, 31), channel="rest"),
    ],
)
def test_every_csv_holds_what_the_crm_holds(factory: sessionmaker, query: InsightsQuery) -> None:
    seed_month(factory)
    now = datetime(2026, 3, 9, 12, tzinfo=UTC)  # the last days are too recent to tell

    result = insights(factory, query, VOCABULARY, now=now)
    expected = expected_rows(factory, query, now)

    assert set(CHARTS) == set(expected)
    for chart in CHARTS:
        header = result.csv(chart).splitlines()[0]
        assert parsed(result.csv(chart)) == [same(row) for row in expected[chart]], chart
        assert all(len(row) == header.count(",") + 1 for row in expected[chart]), chart
    if query.channel is None:  # the data set exercises what the definitions single out
        assert result.outcomes.open and result.handoff_wait.claimed and result.too_recent_to_tell
        assert 0 < result.durable_resolution.numerator < result.outcomes.resolved_by_bot
        assert result.fallback_rate.numerator and result.first_reply.conversations
