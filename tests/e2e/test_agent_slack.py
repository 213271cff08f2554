"""The live handoff through the agents' Slack channel, end to end: a Telegram customer
asks for a person, the summary appears in the agents' channel (at the fake Slack API),
an agent claims it with a signed click, messages are relayed both ways while the bot
stays silent (``/restart`` included), the agent hands back, and the CSAT is stored."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.db import session_factory
from crm_bridge.handoff import HandoffDesk
from tests.e2e.conftest import SLACK_AGENT_CHANNEL, SLACK_SIGNING_SECRET, BotServers
from tests.e2e.test_slack import event_body, signed_post
from tests.e2e.test_telegram import message_update, new_id, press_telegram_button
from tests.e2e.test_telegram import post as telegram_post
from tests.fakes.slack_api import TEAM_ID, FakeSlackApi
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.e2e
FORM = "application/x-www-form-urlencoded"


def click(
    servers: BotServers,
    message: Any,
    action_id: str,
    agent: str,
    name: str,
    secret: str = SLACK_SIGNING_SECRET,
) -> requests.Response:
    """A signed Block Kit button press by ``agent`` on one of our agents' channel posts."""
    button = next(
        element
        for block in message.params["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action_id
    )
    ts = message.params["_ts"]
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "api_app_id": "A1",
        "token": "t",
        "user": {"id": agent, "username": name.lower(), "name": name},
        "channel": {"id": SLACK_AGENT_CHANNEL},
        "trigger_id": f"trig-{random.random()}",
        "container": {"type": "message", "channel_id": SLACK_AGENT_CHANNEL, "message_ts": ts},
        "message": {"ts": ts, "text": message.params["text"], "blocks": message.params["blocks"]},
        "actions": [{**button, "type": "button", "block_id": "b", "action_ts": "1.1"}],
    }
    form = urlencode({"payload": json.dumps(payload)}).encode()
    return signed_post(servers, form, FORM, secret=secret)


def thread_reply(servers: BotServers, thread: str, agent: str, text: str) -> requests.Response:
    """An agent writes in a handoff's thread (a signed ``message`` event)."""
    return signed_post(
        servers,
        event_body(
            {
                "type": "message",
                "channel": SLACK_AGENT_CHANNEL,
                "channel_type": "channel",
                "user": agent,
                "text": text,
                "ts": f"{time.time():.6f}",
                "thread_ts": thread,
            }
        ),
    )


def summary_for(slack: FakeSlackApi, handoff_id: int) -> Any:
    posts = slack.wait_for("chat.postMessage", 1, channel=SLACK_AGENT_CHANNEL, timeout=30)
    return next(p for p in posts if p.params["text"].startswith(f"Handoff #{handoff_id}:"))


def thread_posts(slack: FakeSlackApi, thread: str, count: int = 0) -> list[str]:
    calls = (
        slack.wait_for("chat.postMessage", count, thread_ts=thread, timeout=30)
        if count
        else slack.calls_to("chat.postMessage", thread_ts=thread)
    )
    return [c.params["text"] for c in calls]


def test_a_telegram_customer_is_helped_by_an_agent_in_slack(
    bot_servers: BotServers, fake_slack: FakeSlackApi, fake_telegram: FakeTelegramApi
) -> None:
    chat = new_id()
    telegram_post(bot_servers, message_update(chat, "where is my order 10001?"))
    telegram_post(bot_servers, message_update(chat, "I want to talk to a human"))
    assert "in the queue" in fake_telegram.sent_to(chat, 2)[-1].params["text"]
    desk = HandoffDesk(bot_servers.crm_url)
    handoff = desk.ownership(str(chat)).handoff
    assert handoff is not None

    summary = summary_for(fake_slack, handoff.id)
    shown = json.dumps(summary.params["blocks"])
    for expected in (
        "telegram",
        "request_human",
        "order_status",
        "where is my order 10001?",
        "the customer asked for a person",
        "Claim",
    ):
        assert expected in shown, expected
    thread = desk.get(handoff.id).console_thread
    assert thread == summary.params["_ts"]

    # Claim (a signed click). The customer hears who joined; the summary loses its button.
    assert click(bot_servers, summary, "rapport_handoff_claim", "UDANA", "Dana").status_code == 200
    assert "Dana from our support team" in fake_telegram.sent_to(chat, 3)[-1].params["text"]
    assert desk.get(handoff.id).agent_id == "UDANA"
    [update] = fake_slack.wait_for("chat.update", 1, ts=thread, timeout=10)
    assert "Claimed by" in json.dumps(update.params["blocks"]) and "Claim" not in [
        e["text"]["text"]
        for b in update.params["blocks"]
        for e in b.get("elements", [])
        if b["type"] == "actions"
    ]
    note = fake_slack.wait_for("chat.postMessage", 1, thread_ts=thread, timeout=30)[0]
    assert "Dana has the conversation" in note.params["text"]

    # Two customer messages (one a /restart) reach the thread; the bot says nothing.
    sent_before = len(fake_telegram.sent_to(chat))
    for text in ("/restart", "it has been two weeks"):
        telegram_post(bot_servers, message_update(chat, text))
    relayed = thread_posts(fake_slack, thread, 3)
    assert relayed[-2:] == [
        ":speech_balloon: *Customer:* /restart",
        ":speech_balloon: *Customer:* it has been two weeks",
    ]

    # Two agent replies in the thread reach the customer on Telegram.
    for text in (
        "Sorry about that! Checking with DPD now.",
        "It arrives tomorrow &amp; I'll watch it.",
    ):
        assert thread_reply(bot_servers, thread, "UDANA", text).status_code == 200
    sent = [c.params["text"] for c in fake_telegram.sent_to(chat, sent_before + 2)]
    assert sent[sent_before:] == [
        "Sorry about that! Checking with DPD now.",
        "It arrives tomorrow & I'll watch it.",
    ]
    # Mentioning the bot in the thread is agents' talk, not a new customer conversation.
    mention = event_body(
        {
            "type": "app_mention",
            "user": "UDANA",
            "channel": SLACK_AGENT_CHANNEL,
            "text": "<@UBOT0001> note to self",
            "ts": f"{time.time():.6f}",
            "thread_ts": thread,
        }
    )
    assert signed_post(bot_servers, mention).status_code == 200
    # Someone who does not hold it cannot write to the customer.
    assert thread_reply(bot_servers, thread, "UOTHER", "hello from me").status_code == 200
    [hint] = fake_slack.wait_for("chat.postEphemeral", 1, user="UOTHER", timeout=10)
    assert "Claim this conversation" in hint.params["text"]

    # Hand back with the thread's button; the bot asks for a rating and stores it.
    assert (
        click(bot_servers, note, "rapport_handoff_handback_resolved", "UDANA", "Dana").status_code
        == 200
    )
    question = fake_telegram.sent_to(chat, sent_before + 3)[-1]
    assert "rate the help" in question.params["text"]
    press_telegram_button(bot_servers, chat, question, "5")
    assert "Thank you" in fake_telegram.sent_to(chat, sent_before + 4)[-1].params["text"]
    telegram_post(bot_servers, message_update(chat, "hi"))
    assert "How can I help" in fake_telegram.sent_to(chat, sent_before + 5)[-1].params["text"]

    back = desk.get(handoff.id)
    assert (back.state, back.outcome, back.csat) == ("closed", "resolved", 5)
    assert back.claimed_at and back.handed_back_at and back.claimed_at <= back.handed_back_at
    with session_factory(bot_servers.crm_url)() as session:
        interaction = session.get(models.Interaction, back.interaction_id)
        assert interaction.csat == 5
        lines = [(m.author, m.text) for m in interaction.messages]
    assert ("agent:Dana", "Sorry about that! Checking with DPD now.") in lines
    assert "hello from me" not in [text for _, text in lines]
    # The mention above reached neither the customer nor a bot conversation of its own.
    assert "note to self" not in [text for _, text in lines]
    assert HandoffDesk(bot_servers.crm_url).ownership(f"{TEAM_ID}.UDANA").owner == "bot"
    assert not [
        c
        for c in fake_slack.calls_to("chat.postMessage", channel=SLACK_AGENT_CHANNEL)
        if "How can I help" in c.params["text"] or "say it another way" in c.params["text"]
    ]


def test_two_agents_claiming_at_once_one_wins(
    bot_servers: BotServers, fake_slack: FakeSlackApi, fake_telegram: FakeTelegramApi
) -> None:
    chat = new_id()
    telegram_post(bot_servers, message_update(chat, "I want to talk to a human"))
    desk = HandoffDesk(bot_servers.crm_url)
    handoff = desk.ownership(str(chat)).handoff
    assert handoff is not None
    summary = summary_for(fake_slack, handoff.id)
    forged = click(bot_servers, summary, "rapport_handoff_claim", "UEVE", "Eve", secret="guess")
    assert forged.status_code == 401 and desk.get(handoff.id).state == "queued"
    agents = [("UKIM", "Kim"), ("ULEE", "Lee")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(
            pool.map(
                lambda agent: click(
                    bot_servers, summary, "rapport_handoff_claim", *agent
                ).status_code,
                agents,
            )
        )
    assert codes == [200, 200]
    deadline = time.monotonic() + 20
    while desk.get(handoff.id).state != "agent" and time.monotonic() < deadline:
        time.sleep(0.2)
    winner = desk.get(handoff.id).agent_id
    loser = next(agent for agent, _ in agents if agent != winner)
    assert winner in {"UKIM", "ULEE"}
    [told] = fake_slack.wait_for("chat.postEphemeral", 1, user=loser, timeout=20)
    assert "claimed this conversation first" in told.params["text"]
    joined = [
        c.params["text"] for c in fake_telegram.sent_to(chat, 2) if "joined" in c.params["text"]
    ]
    assert len(joined) == 1


def slash_command(servers: BotServers, command: str, text: str, agent: str) -> requests.Response:
    """A signed slash command typed by ``agent`` in the agents' channel."""
    form = urlencode(
        {
            "command": command,
            "text": text,
            "user_id": agent,
            "user_name": agent.lower(),
            "team_id": TEAM_ID,
            "channel_id": SLACK_AGENT_CHANNEL,
            "trigger_id": f"t{new_id()}",
            "response_url": "https://hooks.slack.invalid/x",
            "token": "legacy",
            "api_app_id": "A1",
        }
    ).encode()
    return signed_post(servers, form, FORM)


def test_an_agent_takes_over_a_conversation_from_slack(
    bot_servers: BotServers, fake_slack: FakeSlackApi, fake_telegram: FakeTelegramApi
) -> None:
    chat = new_id()
    telegram_post(bot_servers, message_update(chat, "what are your opening hours?"))
    fake_telegram.sent_to(chat, 1)
    deadline = time.monotonic() + 20
    interaction = None
    while interaction is None and time.monotonic() < deadline:
        with session_factory(bot_servers.crm_url)() as session:
            interaction = session.execute(
                select(models.Interaction.id).where(models.Interaction.sender_id == str(chat))
            ).scalar_one_or_none()
        time.sleep(0.3)
    assert interaction is not None

    taken = slash_command(bot_servers, "/takeover", str(interaction), "USAM")
    assert taken.status_code == 200 and "You have conversation" in taken.text
    assert "from our support team has joined" in fake_telegram.sent_to(chat, 2)[-1].params["text"]
    handoff = HandoffDesk(bot_servers.crm_url).ownership(str(chat)).handoff
    assert handoff is not None and handoff.reason == "agent_initiative" and handoff.console_thread
    [summary] = [
        c
        for c in fake_slack.calls_to("chat.postMessage", channel=SLACK_AGENT_CHANNEL)
        if c.params["_ts"] == handoff.console_thread
    ]
    assert "what are your opening hours?" in json.dumps(summary.params["blocks"])
    again = slash_command(bot_servers, "/takeover", str(interaction), "UKIM")
    assert "already holds" in again.text

    telegram_post(bot_servers, message_update(chat, "oh hello, a person!"))
    assert thread_posts(fake_slack, handoff.console_thread, 2)[-1].endswith("oh hello, a person!")
    done = slash_command(bot_servers, "/handback", "follow-up", "USAM")
    assert f"#{handoff.id} is back with the bot (needs follow up)" in done.text
    assert HandoffDesk(bot_servers.crm_url).get(handoff.id).outcome == "needs_follow_up"
    assert "rate the help" in fake_telegram.sent_to(chat, 3)[-1].params["text"]
