"""The trainer's inbox on a real SQLite CRM, filled the way the bot fills it: the
interaction log records Rasa events, the handoff desk hands conversations to agents."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.db import session_factory
from crm_bridge.errors import Conflict, InvalidInput, NotFound
from crm_bridge.gateway import ConversationRef
from crm_bridge.handoff import HandoffDesk, HandoffReason
from crm_bridge.inbox import Inbox, InboxCounts
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.masking import Masker
from tests.unit.test_interaction_log import user

THRESHOLD = 0.5


def start(sender: str, ts: float) -> dict[str, Any]:
    return {"sender_id": sender, "event": "session_started", "timestamp": ts}


def says(sender: str, ts: float, text: str, intent: str, confidence: float) -> dict[str, Any]:
    return user(sender, ts, text, intent, confidence)


def bot(sender: str, ts: float, text: str) -> dict[str, Any]:
    return {"sender_id": sender, "event": "bot", "timestamp": ts, "text": text}


@dataclass
class Shop:
    """A CRM with three conversations, one of them handed to an agent."""

    url: str
    inbox: Inbox
    log: InteractionLog
    desk: HandoffDesk
    t0: float

    def line_id(self, text: str) -> int:
        with session_factory(self.url)() as session:
            return int(
                session.execute(
                    select(models.InteractionMessage.id).where(
                        models.InteractionMessage.text == text
                    )
                ).scalar_one()
            )

    def interaction_of(self, sender: str) -> int:
        with session_factory(self.url)() as session:
            return int(
                session.execute(
                    select(models.Interaction.id).where(models.Interaction.sender_id == sender)
                ).scalar_one()
            )


@pytest.fixture
def shop(crm_url: str) -> Shop:
    log = InteractionLog(crm_url)
    desk = HandoffDesk(crm_url)
    t0 = time.time() - 3600
    log.record_events(
        [
            start("demo-alice", t0),
            says("demo-alice", t0 + 1, "hi", "greet", 0.99),
            bot("demo-alice", t0 + 2, "Hi Alice! How can I help?"),
            says("demo-alice", t0 + 3, "wher is my parcle 10001", "order_status", 0.41),
            bot("demo-alice", t0 + 4, "Order 10001 is on its way, Alice."),
            says("demo-alice", t0 + 5, "/affirm", "affirm", 0.1),  # a button: nothing to label
            says("demo-alice", t0 + 6, "thanks", "thank", THRESHOLD),  # not *below* it
            start("web-1", t0 + 100),
            says("web-1", t0 + 101, "blorp zzz call 07700 900123", "nlu_fallback", 0.26),
            says("web-1", t0 + 102, "a very long text", "inbound_too_long", 0.1),
            says("web-1", t0 + 103, "??", "inbound_unclear", 0.2),
            says("web-1", t0 + 104, "", "greet", 0.1),
            start("demo-bob", t0 + 200),
            says(
                "demo-bob", t0 + 201, "my stove arrived in pieces, I'm Bob Osei", "complaint", 0.95
            ),
            bot("demo-bob", t0 + 202, "I'm sorry to hear that."),
            says("demo-bob", t0 + 203, "/request_human", "request_human", 1.0),
            says("demo-bob", t0 + 204, "I want a human", "request_human", 0.98),
        ]
    )
    handoff = desk.request(
        ConversationRef("demo-bob", "rest", t0 + 200), HandoffReason.CUSTOMER_REQUEST
    )
    desk.claim(handoff.id, "sam", "Sam")
    for n in range(1, 5):
        desk.record_agent_reply(handoff.id, "sam", f"Reply {n}: Bob, your order 10004 is fine.")
    log.record_events([says("demo-bob", time.time() + 1, "thanks Sam", "thank", 0.3)])
    return Shop(crm_url, Inbox(session_factory(crm_url)), log, desk, t0)


def test_lists_unsure_lines_newest_first_with_their_reasons_masked(shop: Shop) -> None:
    items = shop.inbox.items(threshold=THRESHOLD)

    assert [(item.text, item.reasons) for item in items] == [
        ("thanks Sam", ("low_confidence",)),
        ("my stove arrived in pieces, I'm [name]", ("before_handoff",)),
        ("blorp zzz call [phone]", ("low_confidence", "fallback")),
        ("wher is my parcle [order]", ("low_confidence",)),
    ]
    stove = items[1]
    assert stove.message_id == shop.line_id("my stove arrived in pieces, I'm Bob Osei")
    assert stove.interaction_id == shop.interaction_of("demo-bob")
    assert (stove.channel, stove.intent, stove.confidence) == ("rest", "complaint", 0.95)
    assert stove.sent_at.timestamp() == pytest.approx(shop.t0 + 201)
    # The agents' first three answers, masked, on every item of that conversation.
    assert stove.agent_replies == tuple(
        f"Reply {n}: [name], your order [order] is fine." for n in (1, 2, 3)
    )
    assert items[0].agent_replies == stove.agent_replies
    assert items[2].agent_replies == items[3].agent_replies == ()


def test_the_request_for_a_person_is_not_the_line_before_the_handoff(shop: Shop) -> None:
    literal = shop.inbox.items(threshold=0.0, fallback_intent="none", request_intents=frozenset())
    assert [(item.text, item.reasons) for item in literal] == [
        ("I want a human", ("before_handoff",))
    ]
    default = shop.inbox.items(threshold=0.0, fallback_intent="none")
    assert [item.text for item in default] == ["my stove arrived in pieces, I'm [name]"]


def test_fallback_and_skipped_intents_are_the_callers_to_choose(shop: Shop) -> None:
    items = shop.inbox.items(
        threshold=0.0, fallback_intent="complaint", skip_intents=frozenset({"inbound_unclear"})
    )
    assert [(item.text, item.reasons) for item in items] == [
        ("my stove arrived in pieces, I'm [name]", ("fallback", "before_handoff"))
    ]
    everything = shop.inbox.items(threshold=1.0, skip_intents=frozenset())
    texts = [item.text for item in everything]
    assert "a very long text" in texts and "??" in texts
    # Never: bot or agent lines, button payloads, empty lines.
    assert not any(t.startswith(("/", "Reply", "Hi", "Order")) or not t for t in texts)


def test_limit_keeps_the_newest(shop: Shop) -> None:
    assert [item.text for item in shop.inbox.items(2, threshold=THRESHOLD)] == [
        "thanks Sam",
        "my stove arrived in pieces, I'm [name]",
    ]
    with pytest.raises(InvalidInput) as refused:
        shop.inbox.items(0, threshold=THRESHOLD)
    assert refused.value.field == "limit"
    with pytest.raises(InvalidInput) as refused:
        shop.inbox.items(threshold=1.5)
    assert refused.value.field == "threshold"


def test_counts_agree_with_the_items(shop: Shop) -> None:
    for threshold in (0.0, 0.3, THRESHOLD, 1.0):
        items = shop.inbox.items(1000, threshold=threshold)
        counts = shop.inbox.counts(threshold=threshold)
        assert counts == InboxCounts(
            total=len(items),
            low_confidence=sum("low_confidence" in item.reasons for item in items),
            fallback=sum("fallback" in item.reasons for item in items),
            before_handoff=sum("before_handoff" in item.reasons for item in items),
        )
    assert shop.inbox.counts(threshold=THRESHOLD) == InboxCounts(4, 3, 1, 1)


def test_labelling_stores_and_returns_training_examples(shop: Shop) -> None:
    parcel = shop.line_id("wher is my parcle 10001")

    reviewed = shop.inbox.decide([parcel, parcel], "labelled", "tess", intent="order_status")

    assert [(r.message_id, r.decision, r.intent, r.example) for r in reviewed] == [
        (parcel, "labelled", "order_status", "wher is my parcle [12345](order_number)")
    ]
    with session_factory(shop.url)() as session:
        row = session.execute(select(models.InboxReview)).scalar_one()
    assert (row.message_id, row.decision, row.intent, row.reviewer) == (
        parcel,
        "labelled",
        "order_status",
        "tess",
    )
    assert row.example == "wher is my parcle [12345](order_number)"
    assert row.decided_at.tzinfo is not None
    assert parcel not in [item.message_id for item in shop.inbox.items(threshold=THRESHOLD)]
    assert shop.inbox.counts(threshold=THRESHOLD).total == 3


def test_out_of_scope_and_dismissed(shop: Shop) -> None:
    blorp = shop.line_id("blorp zzz call 07700 900123")
    stove = shop.line_id("my stove arrived in pieces, I'm Bob Osei")

    out = shop.inbox.decide([blorp], "out_of_scope", "tess", intent="ignored")
    gone = shop.inbox.decide([stove], "dismissed", "tess")

    assert [(r.decision, r.intent, r.example) for r in out] == [
        ("out_of_scope", None, "blorp zzz call [+44 20 7946 0000](phone)")
    ]
    assert [(r.message_id, r.decision, r.intent, r.example) for r in gone] == [
        (stove, "dismissed", None, None)
    ]
    with session_factory(shop.url)() as session:
        rows = session.execute(
            select(models.InboxReview.decision, models.InboxReview.intent).order_by(
                models.InboxReview.id
            )
        ).all()
    assert [tuple(row) for row in rows] == [("out_of_scope", None), ("dismissed", None)]
    assert shop.inbox.counts(threshold=THRESHOLD) == InboxCounts(2, 2, 0, 0)


def test_a_decision_is_all_or_nothing(shop: Shop) -> None:
    parcel = shop.line_id("wher is my parcle 10001")
    blorp = shop.line_id("blorp zzz call 07700 900123")
    shop.inbox.decide([parcel], "dismissed", "tess")

    with pytest.raises(Conflict, match=f"message {parcel}"):
        shop.inbox.decide([blorp, parcel], "labelled", "rob", intent="greet")
    with pytest.raises(NotFound, match="message 987654"):
        shop.inbox.decide([blorp, 987654], "dismissed", "rob")
    bot_line = shop.line_id("I'm sorry to hear that.")
    with pytest.raises(NotFound, match=str(bot_line)):
        shop.inbox.decide([bot_line], "dismissed", "rob")

    waiting = [item.message_id for item in shop.inbox.items(threshold=THRESHOLD)]
    assert blorp in waiting
    assert shop.inbox.counts(threshold=THRESHOLD).total == 3


@pytest.mark.parametrize(
    ("ids", "decision", "reviewer", "intent", "field"),
    [
        ([1], "maybe", "tess", None, "decision"),
        ([1], "labelled", "tess", None, "intent"),
        ([1], "labelled", "tess", "not an intent!", "intent"),
        ([1], "dismissed", " ", None, "reviewer"),
        ([1], "dismissed", "t" * 81, None, "reviewer"),
        ([], "dismissed", "tess", None, "message_ids"),
        (["1"], "dismissed", "tess", None, "message_ids"),
    ],
)
def test_invalid_decisions_are_refused(
    shop: Shop, ids: list[Any], decision: str, reviewer: str, intent: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        shop.inbox.decide(ids, decision, reviewer, intent=intent)
    assert refused.value.field == field
    assert shop.inbox.counts(threshold=THRESHOLD).total == 4


def test_the_conversation_of_an_item_is_masked(shop: Shop) -> None:
    item = next(item for item in shop.inbox.items(threshold=THRESHOLD) if "stove" in item.text)

    lines = shop.inbox.conversation(item.interaction_id)

    assert [(line.author, line.text) for line in lines] == [
        ("customer", "my stove arrived in pieces, I'm [name]"),
        ("bot", "I'm sorry to hear that."),
        ("customer", "/request_human"),
        ("customer", "I want a human"),
        *[("agent:Sam", f"Reply {n}: [name], your order [order] is fine.") for n in range(1, 5)],
        ("customer", "thanks Sam"),
    ]
    assert lines[0].message_id == item.message_id
    assert (lines[0].intent, lines[0].confidence) == ("complaint", 0.95)
    assert [line.sent_at for line in lines] == sorted(line.sent_at for line in lines)
    with pytest.raises(NotFound):
        shop.inbox.conversation(987654)


def test_new_customers_names_are_masked_at_once(shop: Shop) -> None:
    shop.log.record_events(
        [
            start("web-2", shop.t0 + 300),
            says("web-2", shop.t0 + 301, "Dana Scully here, dana@example.org", "greet", 0.2),
        ]
    )
    assert shop.inbox.items(1, threshold=0.3)[0].text == "Dana Scully here, [email]"
    with session_factory(shop.url).begin() as session:
        session.add(models.Contact(name="Dana Scully", email="dana@example.org"))
    assert shop.inbox.items(1, threshold=0.3)[0].text == "[name] here, [email]"


def test_a_handoff_without_customer_lines_lists_nothing(shop: Shop) -> None:
    shop.desk.request(
        ConversationRef("silent", "rest", shop.t0 + 400), HandoffReason.AGENT_INITIATIVE
    )
    assert shop.inbox.counts(threshold=THRESHOLD) == InboxCounts(4, 3, 1, 1)


def test_a_decision_taken_meanwhile_by_someone_else_is_a_conflict(shop: Shop) -> None:
    parcel = shop.line_id("wher is my parcle 10001")
    blorp = shop.line_id("blorp zzz call 07700 900123")
    other_trainer = Inbox(session_factory(shop.url))

    def masker_while_another_trainer_decides(session: Session) -> Masker:
        # Runs after the "already reviewed?" check and before the write: the race.
        other_trainer.decide([parcel], "dismissed", "rob")
        return Masker.from_session(session)

    racing = Inbox(session_factory(shop.url), masker_while_another_trainer_decides)
    with pytest.raises(Conflict, match=f"messages {blorp}, {parcel}"):
        racing.decide([blorp, parcel], "labelled", "tess", intent="order_status")

    with session_factory(shop.url)() as session:
        rows = session.execute(select(models.InboxReview.message_id, models.InboxReview.reviewer))
        assert [tuple(row) for row in rows] == [(parcel, "rob")]
