"""The interaction log: sessions, transcript order, outcomes, idempotent replay."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.db import session_factory
from crm_bridge.errors import CrmUnavailable
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.interaction_log import DialogueVocabulary, InteractionLog
from crm_bridge.sql_gateway import SqlCrmGateway


def user(sender: str, ts: float, text: str, intent: str, confidence: float = 0.9) -> dict:
    return {
        "sender_id": sender,
        "event": "user",
        "timestamp": ts,
        "text": text,
        "input_channel": "rest",
        "parse_data": {"intent": {"name": intent, "confidence": confidence}, "entities": []},
    }


def bot(sender: str, ts: float, text: str, **extra: Any) -> dict:
    return {"sender_id": sender, "event": "bot", "timestamp": ts, "text": text, **extra}


def session_start(sender: str, ts: float) -> list[dict]:
    return [
        {
            "sender_id": sender,
            "event": "action",
            "timestamp": ts - 0.001,
            "name": "action_session_start",
        },
        {"sender_id": sender, "event": "session_started", "timestamp": ts},
        {"sender_id": sender, "event": "action", "timestamp": ts + 0.001, "name": "action_listen"},
    ]


def interactions(url: str) -> list[models.Interaction]:
    with session_factory(url)() as session:
        rows = session.execute(select(models.Interaction).order_by(models.Interaction.id))
        found = list(rows.scalars())
        for row in found:
            _ = row.messages, row.tickets
        return found


def conversation(sender: str, t0: float) -> list[dict]:
    return [
        *session_start(sender, t0),
        user(sender, t0 + 1, "hi", "greet"),
        bot(
            sender,
            t0 + 1.1,
            "Hello! How can I help?",
            data={"buttons": [{"title": "Order status", "payload": "/order_status"}]},
        ),
        user(sender, t0 + 2, "thanks 🙏", "thank"),
        bot(sender, t0 + 2.1, "You're welcome!"),
    ]


def test_one_interaction_with_the_whole_transcript(crm_url: str) -> None:
    log = InteractionLog(crm_url)
    assert log.record_events(conversation("demo-alice", 1_700_000_000.0)) == 4
    [interaction] = interactions(crm_url)
    assert interaction.channel == "rest"
    assert interaction.contact_id is not None  # demo-alice is a linked identity
    assert [(m.direction, m.text) for m in interaction.messages] == [
        ("inbound", "hi"),
        ("outbound", "Hello! How can I help?"),
        ("inbound", "thanks 🙏"),
        ("outbound", "You're welcome!"),
    ]
    assert interaction.messages[0].intent == "greet"
    assert interaction.messages[0].confidence == pytest.approx(0.9)
    assert interaction.messages[1].buttons == [
        {"title": "Order status", "payload": "/order_status"}
    ]
    assert interaction.intents == ["greet", "thank"]
    assert interaction.outcome == "resolved_by_bot"
    assert interaction.ended_at is not None and interaction.ended_at.timestamp() == pytest.approx(
        1_700_000_002.1
    )
    assert "4 messages" in interaction.summary


def test_replaying_events_adds_nothing(crm_url: str) -> None:
    log = InteractionLog(crm_url)
    events = conversation("web-7", 1_700_000_000.0)
    log.record_events(events)
    assert log.record_events(events) == 0
    assert log.record_events(list(reversed(events))) == 0
    [interaction] = interactions(crm_url)
    assert len(interaction.messages) == 4


def test_a_new_session_starts_a_new_interaction_and_closes_the_old(crm_url: str) -> None:
    log = InteractionLog(crm_url)
    log.record_events(conversation("web-8", 1_700_000_000.0))
    log.record_events(
        [*session_start("web-8", 1_700_010_000.0), user("web-8", 1_700_010_001.0, "hey", "greet")]
    )
    first, second = interactions(crm_url)
    assert first.closed and not second.closed
    assert len(first.messages) == 4 and [m.text for m in second.messages] == ["hey"]
    assert second.outcome == "abandoned"


def test_outcomes_reported_by_actions_and_tickets(crm_url: str) -> None:
    log = InteractionLog(crm_url)
    t0 = 1_700_000_000.0
    ref = ConversationRef("web-9", "rest", t0)
    events = [
        *session_start("web-9", t0),
        user("web-9", t0 + 1, "I want a human", "request_human"),
        {
            "sender_id": "web-9",
            "event": "slot",
            "timestamp": t0 + 1.2,
            "name": "interaction_outcome",
            "value": "handed_off",
        },
        {
            "sender_id": "web-9",
            "event": "slot",
            "timestamp": t0 + 1.3,
            "name": "interaction_outcome",
            "value": "resolved_by_bot",
        },
        bot("web-9", t0 + 1.4, "An agent will follow up."),
    ]
    # The action writes its ticket before the broker delivers the events.
    SqlCrmGateway.from_url(crm_url).open_ticket(ref, TicketCategory.HUMAN_REQUEST, "Human", "")
    log.record_events(events)
    [interaction] = interactions(crm_url)
    assert interaction.outcome == "handed_off"  # the highest-ranked outcome wins
    assert len(interaction.tickets) == 1 and "1 ticket" in interaction.summary


def test_a_ticket_alone_makes_the_outcome_ticket_created(crm_url: str) -> None:
    t0 = 1_700_000_000.0
    SqlCrmGateway.from_url(crm_url).open_ticket(
        ConversationRef("web-10", "rest", t0), TicketCategory.COMPLAINT, "Complaint", ""
    )
    InteractionLog(crm_url).record_events(
        [*session_start("web-10", t0), user("web-10", t0 + 1, "it broke", "complaint")]
    )
    [interaction] = interactions(crm_url)
    assert interaction.outcome == "ticket_created"


def test_faq_answers_resolve_the_question(crm_url: str) -> None:
    t0 = 1_700_000_000.0
    InteractionLog(crm_url).record_events(
        [
            *session_start("web-11", t0),
            user("web-11", t0 + 1, "when are you open?", "faq"),
            bot(
                "web-11",
                t0 + 1.1,
                "Mon-Fri 8-20",
                metadata={"utter_action": "utter_faq/opening_hours"},
            ),
        ]
    )
    assert interactions(crm_url)[0].outcome == "resolved_by_bot"


def test_malformed_events_are_skipped_not_fatal(crm_url: str) -> None:
    log = InteractionLog(crm_url)
    added = log.record_events(
        [
            "not a dict",  # type: ignore[list-item]
            {"event": "user", "timestamp": 1.0},
            {"sender_id": "x", "event": "user", "timestamp": "yesterday"},
            {"sender_id": "x", "event": "user", "timestamp": 5.0, "text": None, "parse_data": "?"},
            user("x", 6.0, "ok", "affirm"),
        ]
    )
    assert added == 2
    assert [m.text for m in interactions(crm_url)[0].messages] == ["", "ok"]


def test_an_unreachable_crm_raises_crm_unavailable() -> None:
    log = InteractionLog("postgresql+psycopg2://postgres@127.0.0.1:1/none")
    with pytest.raises(CrmUnavailable):
        log.record_events([user("x", time.time(), "hi", "greet")])


def test_the_transcript_keeps_the_customers_words_and_language(crm_url: str) -> None:
    """A message the inbound step turned into a shortcut is stored as the customer wrote
    it (cut and marked when too long), with the detected language."""
    t0 = time.time()
    dutch = user("inb-1", t0 + 1, "/inbound_other_language", "inbound_other_language", 1.0)
    dutch["metadata"] = {"inbound": {"text": "waar is mijn bestelling", "language": "nl"}}
    long = user("inb-1", t0 + 2, "/inbound_too_long", "inbound_too_long", 1.0)
    long["metadata"] = {"inbound": {"text": "aaa […truncated: 5000 characters]"}}
    plain = user("inb-1", t0 + 3, "hi", "greet")
    InteractionLog(crm_url).record_events([*session_start("inb-1", t0), dutch, long, plain])
    [interaction] = interactions(crm_url)
    lines = [(m.text, m.intent, m.language) for m in interaction.messages]
    assert lines == [
        ("waar is mijn bestelling", "inbound_other_language", "nl"),
        ("aaa […truncated: 5000 characters]", "inbound_too_long", None),
        ("hi", "greet", None),
    ]


def test_the_log_knows_no_intent_of_its_own(crm_url: str) -> None:
    """What counts as closing, resolving or an outcome comes from configuration."""
    t0 = time.time()
    events = [*session_start("voc-1", t0), user("voc-1", t0 + 1, "cheers", "thank")]
    InteractionLog(crm_url, DialogueVocabulary()).record_events(events)
    [neutral] = interactions(crm_url)
    assert neutral.outcome == "abandoned"  # "thank" means nothing to a bare log

    t1 = t0 + 10
    configured = DialogueVocabulary(closing_intents=frozenset({"thank"}))
    events = [*session_start("voc-2", t1), user("voc-2", t1 + 1, "cheers", "thank")]
    InteractionLog(crm_url, configured).record_events(events)
    assert interactions(crm_url)[-1].outcome == "resolved_by_bot"


def test_the_vocabulary_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_bridge import settings as crm_settings

    monkeypatch.setenv("TRANSCRIPT_CLOSING_INTENTS", " bye , ta ")
    monkeypatch.setenv("TRANSCRIPT_OUTCOME_SLOT", "result")
    vocabulary = DialogueVocabulary.from_settings(crm_settings.load())
    assert vocabulary.closing_intents == frozenset({"bye", "ta"})
    assert vocabulary.outcome_slot == "result"
    assert "nlu_fallback" in vocabulary.unsummarised_intents
    assert "greet" in vocabulary.unsummarised_intents
