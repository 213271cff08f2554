"""Whole conversations over the REST channel of real Rasa and action servers, then the
CRM rows they must leave: one Interaction per session, the complete ordered transcript,
tickets and returns, identities and outcomes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.db import session_factory
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.e2e.conftest import BotServers

pytestmark = pytest.mark.e2e


def new_sender(prefix: str) -> str:
    return f"e2e-{prefix}-{uuid.uuid4().hex[:8]}"


def linked_sender(servers: BotServers, email: str, prefix: str) -> str:
    """A fresh REST sender already linked (and proven) to the demo contact with this email."""
    sender = new_sender(prefix)
    gateway = SqlCrmGateway.from_url(servers.crm_url)
    contact_id = gateway.verify_order_email(
        {"alice@example.com": "10001", "bob@example.com": "10003"}[email], email
    ).contact_id
    gateway.link_identity("rest", sender, contact_id, proof="link_token")
    return sender


def talk(servers: BotServers, sender: str, *messages: str) -> list[list[dict]]:
    """Send the messages in order; the replies to each."""
    return [servers.say(sender, message) for message in messages]


def reply_text(replies: list[dict]) -> str:
    return " ".join(reply.get("text", "") for reply in replies)


def interactions_of(
    servers: BotServers, sender: str, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The sender's Interactions as plain dicts, once ``ready`` says the log caught up
    and two reads in a row agree (the log is written in batches, off the request)."""
    deadline = time.monotonic() + 20
    previous: list[dict[str, Any]] | None = None
    while True:
        data = read_interactions(servers, sender)
        if (ready(data) and data == previous) or time.monotonic() > deadline:
            return data
        previous = data
        time.sleep(0.3)


def read_interactions(servers: BotServers, sender: str) -> list[dict[str, Any]]:
    """The sender's Interactions, oldest first, as plain dicts."""
    with session_factory(servers.crm_url)() as session:
        found = session.execute(
            select(models.Interaction)
            .where(models.Interaction.sender_id == sender)
            .order_by(models.Interaction.started_at)
        ).scalars()
        return [
            {
                "closed": i.closed,
                "outcome": i.outcome,
                "intents": list(i.intents or []),
                "contact": i.contact.email if i.contact else None,
                "channel": i.channel,
                "messages": [(m.direction, m.text) for m in i.messages],
                "tickets": [(t.category, t.reference) for t in i.tickets],
                "returns": [(r.order.number, r.item, r.reference) for r in i.returns],
            }
            for i in found
        ]


def inbound(interaction: dict[str, Any]) -> list[str]:
    return [text for direction, text in interaction["messages"] if direction == "inbound"]


def test_a_linked_customer_checks_an_order(bot_servers: BotServers) -> None:
    sender = linked_sender(bot_servers, "alice@example.com", "alice")
    messages = ("hi", "where is my order 10001?", "thanks!", "bye")
    greeting, status, _, _ = talk(bot_servers, sender, *messages)
    assert any(reply.get("buttons") for reply in greeting)
    assert "DPD-5521" in reply_text(status) and "Trail Running Shoes" in reply_text(status)

    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 4
    )
    assert inbound(interaction) == list(messages)
    directions = [direction for direction, _ in interaction["messages"]]
    assert directions[0] == "inbound" and directions.count("outbound") >= 4
    # Every customer message is followed by at least one bot reply, in order.
    assert "inbound" not in {
        directions[i]
        for i in range(len(directions) - 1)
        if directions[i] == "inbound" and directions[i + 1] == "inbound"
    }
    assert interaction["channel"] == "rest" and interaction["contact"] == "alice@example.com"
    assert "order_status" in interaction["intents"]
    assert interaction["outcome"] == "resolved_by_bot"


def test_an_unlinked_customer_proves_the_order_and_gets_linked(bot_servers: BotServers) -> None:
    sender = new_sender("chloe")
    ask_number, ask_email, status = talk(
        bot_servers, sender, "where is my order?", "10005", "chloe@example.com"
    )
    assert "order number" in reply_text(ask_number).lower()
    assert "email" in reply_text(ask_email).lower()
    assert "UPS-1Z999" in reply_text(status)
    linked = SqlCrmGateway.from_url(bot_servers.crm_url).find_contact_by_identity("rest", sender)
    assert linked is not None and linked.email == "chloe@example.com"
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and d[0]["contact"] is not None
    )
    assert interaction["contact"] == "chloe@example.com"


def test_a_wrong_email_shows_nothing(bot_servers: BotServers) -> None:
    sender = new_sender("guess")
    replies = talk(bot_servers, sender, "track order 10001", "bob@example.com")
    assert "couldn't find an order with that number and email" in reply_text(replies[-1])
    assert not any("DPD" in reply_text(r) for r in replies)
    assert (
        SqlCrmGateway.from_url(bot_servers.crm_url).find_contact_by_identity("rest", sender) is None
    )


def test_a_return_is_registered(bot_servers: BotServers) -> None:
    sender = linked_sender(bot_servers, "alice@example.com", "return")
    replies = talk(
        bot_servers,
        sender,
        "I want to return something",
        "10002",
        "the rain jacket",
        "it's too small",
    )
    assert "R-" in reply_text(replies[-1])
    [interaction] = interactions_of(bot_servers, sender, lambda d: bool(d and d[0]["returns"]))
    [(order, item, reference)] = interaction["returns"]
    assert (order, item) == ("10002", "Rain Jacket") and reference in reply_text(replies[-1])
    interaction = interactions_of(
        bot_servers, sender, lambda d: d[0]["outcome"] == "ticket_created"
    )[0]
    assert interaction["outcome"] == "ticket_created"


def test_a_complaint_creates_a_ticket(bot_servers: BotServers) -> None:
    sender = new_sender("complaint")
    replies = talk(
        bot_servers,
        sender,
        "I want to make a complaint",
        "The courier was rude and left my parcel in the rain",
    )
    assert "T-" in reply_text(replies[-1])
    # The action writes the ticket before Rasa publishes the turn's events: wait for both.
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d and d[0]["tickets"]) and len(inbound(d[0])) == 2
    )
    assert interaction["tickets"][0][0] == "complaint"
    assert "The courier was rude and left my parcel in the rain" in inbound(interaction)


def test_asking_for_a_person(bot_servers: BotServers) -> None:
    sender = new_sender("human")
    [replies] = talk(bot_servers, sender, "I want to talk to a human")
    assert "support team" in reply_text(replies)
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and d[0]["outcome"] == "handed_off"
    )
    assert interaction["outcome"] == "handed_off"
    assert interaction["tickets"][0][0] == "human_request"


def test_a_shop_question_is_answered(bot_servers: BotServers) -> None:
    sender = new_sender("faq")
    answer, _ = talk(bot_servers, sender, "what are your opening hours?", "thank you")
    assert "Monday to Friday" in reply_text(answer)
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 2
    )
    assert interaction["outcome"] == "resolved_by_bot"


def test_a_linked_customer_updates_their_phone(bot_servers: BotServers) -> None:
    sender = linked_sender(bot_servers, "bob@example.com", "phone")
    replies = talk(bot_servers, sender, "I need to change my phone number", "+44 7700 900999")
    assert "+447700900999" in reply_text(replies[-1])
    bob = SqlCrmGateway.from_url(bot_servers.crm_url).find_contact_by_identity("rest", sender)
    assert bob is not None and bob.phone == "+447700900999"


def test_a_new_session_is_a_new_interaction(bot_servers: BotServers) -> None:
    sender = new_sender("sessions")
    talk(bot_servers, sender, "hello", "/session_start", "hi again")
    first, second = interactions_of(
        bot_servers, sender, lambda d: len(d) == 2 and bool(inbound(d[1]))
    )
    assert first["closed"] and not second["closed"]
    # The command that ended the first session is part of the first session's transcript.
    assert inbound(first) == ["hello", "/session_start"] and inbound(second) == ["hi again"]


def test_not_understood_twice_hands_off_to_a_person(bot_servers: BotServers) -> None:
    sender = new_sender("fallback")
    first, second = talk(bot_servers, sender, "blorp wibble zork", "asdfgh qwerty")
    assert "say it another way" in reply_text(first)
    assert "still not sure" in reply_text(second) and "in the queue" in reply_text(second)
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 2
    )
    # Both misses are in the transcript, even though the dialogue forgot them.
    assert inbound(interaction) == ["blorp wibble zork", "asdfgh qwerty"]
    assert interaction["outcome"] == "handed_off"
