"""Handoff across two Rasa instances that share Redis (tracker and lock stores) and a
PostgreSQL CRM: the conversation starts on one instance, an agent claims it through the
other, and both stay silent; a handoff nobody claims times out and the customer is told
once, although both instances run the timeout sweeper."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from crm_bridge.handoff import HandoffDesk
from tests.conftest import postgres_crm
from tests.e2e.conftest import (
    AGENT_API_TOKEN,
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    BotServers,
    agent_api,
    start_bot_servers,
    stop_processes,
)
from tests.e2e.test_conversations import inbound, read_interactions
from tests.e2e.test_telegram import message_update, new_id, press_telegram_button
from tests.e2e.test_telegram import post as telegram_post
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REDIS_URL = "redis://127.0.0.1:6379/9"
CLAIM_TIMEOUT_SECONDS = 8


@pytest.fixture(scope="module")
def two_instances(
    trained_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BotServers, BotServers, FakeTelegramApi]]:
    telegram = FakeTelegramApi(TELEGRAM_TOKEN).start()
    env = {
        "REDIS_URL": REDIS_URL,
        "AGENT_API_TOKEN": AGENT_API_TOKEN,
        "HANDOFF_CLAIM_TIMEOUT_MINUTES": str(CLAIM_TIMEOUT_SECONDS / 60),
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE_URL": telegram.base_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/webhooks/telegram/webhook",
        "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.05",
    }
    started: list = []
    try:
        with postgres_crm() as crm_url:
            instances = []
            for name in ("a", "b"):
                servers, processes = start_bot_servers(
                    trained_model, tmp_path_factory.mktemp(f"instance-{name}"), env, crm_url
                )
                started.extend(processes)
                instances.append(servers)
            try:
                yield instances[0], instances[1], telegram
            finally:
                stop_processes(started)  # before the database is dropped
    finally:
        stop_processes(started)
        telegram.stop()
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()


def api(servers: BotServers, path: str, **body: str) -> requests.Response:
    return agent_api(servers, "POST", path, **body)


def test_a_handoff_started_on_one_instance_is_held_on_both(two_instances) -> None:
    first, second, telegram = two_instances
    chat = new_id()
    telegram_post(first, message_update(chat, "I want to talk to a human"))
    assert "in the queue" in telegram.sent_to(chat, 1)[-1].params["text"]
    handoff = HandoffDesk(first.crm_url).ownership(str(chat)).handoff
    assert handoff is not None

    claimed = api(second, f"/handoffs/{handoff.id}/claim", agent_id="U1", agent_name="Dana")
    assert claimed.status_code == 200
    assert api(first, f"/handoffs/{handoff.id}/claim", agent_id="U2").status_code == 409
    assert "Dana" in telegram.sent_to(chat, 2)[-1].params["text"]

    for servers, text in ((second, "/restart"), (first, "hello??"), (second, "/greet")):
        assert telegram_post(servers, message_update(chat, text)).status_code == 200
    reply = api(first, f"/handoffs/{handoff.id}/reply", agent_id="U1", text="I'm here.")
    assert reply.json()["delivered"] is True
    sent = [c.params["text"] for c in telegram.sent_to(chat, 3)]
    assert sent[2:] == ["I'm here."]  # neither instance's bot said anything

    assert api(second, f"/handoffs/{handoff.id}/handback", agent_id="U1").status_code == 200
    question = telegram.sent_to(chat, 4)[-1]
    press_telegram_button(first, chat, question, "4")
    assert "Thank you" in telegram.sent_to(chat, 5)[-1].params["text"]
    assert HandoffDesk(first.crm_url).get(handoff.id).csat == 4
    # The conversation (in Redis) carries on wherever the next message lands.
    telegram_post(second, message_update(chat, "hi"))
    assert "How can I help" in telegram.sent_to(chat, 6)[-1].params["text"]
    assert redis.Redis.from_url(REDIS_URL, socket_timeout=5).keys(f"*{chat}*")


def test_an_unclaimed_handoff_times_out_and_the_customer_is_told_once(two_instances) -> None:
    first, second, telegram = two_instances
    chat = new_id()
    telegram_post(second, message_update(chat, f"I need a human please {uuid.uuid4().hex[:4]}"))
    assert "in the queue" in telegram.sent_to(chat, 1)[-1].params["text"]
    desk = HandoffDesk(first.crm_url)
    handoff = desk.ownership(str(chat)).handoff
    assert handoff is not None and handoff.state == "queued"

    deadline = time.monotonic() + CLAIM_TIMEOUT_SECONDS * 4
    while desk.get(handoff.id).state == "queued" and time.monotonic() < deadline:
        time.sleep(0.5)
    expired = desk.get(handoff.id)
    assert (expired.state, expired.outcome) == ("closed", "timed_out")
    time.sleep(2 * CLAIM_TIMEOUT_SECONDS / 3)  # another sweep on each instance
    told = [
        c.params["text"] for c in telegram.sent_to(chat) if "kept as a ticket" in c.params["text"]
    ]
    assert len(told) == 1
    telegram_post(first, message_update(chat, "hi"))
    assert "How can I help" in telegram.sent_to(chat, 3)[-1].params["text"]


def test_one_conversation_on_two_instances_at_once_keeps_its_order(two_instances) -> None:
    """Messages of one customer reach both instances at once (a round-robin proxy would
    do that): each is answered, none is lost, and the transcript keeps their order,
    because the Redis lock lets one instance at a time handle the conversation."""
    first, second, _ = two_instances
    sender = f"e2e-two-{uuid.uuid4().hex[:8]}"
    questions = ("when are you open?", "what payment methods do you take?", "do you ship abroad?")
    texts = [f"{questions[i % 3]} ({i})" for i in range(8)]
    replies: dict[int, list[dict]] = {}

    def send(index: int) -> None:
        servers = (first, second)[index % 2]
        replies[index] = servers.say(sender, texts[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
        time.sleep(0.25)  # arrival order, while earlier messages are still being handled
    for thread in threads:
        thread.join(120)
    assert sorted(replies) == list(range(len(texts)))
    assert all(replies[i] for i in replies)  # every message answered

    deadline = time.monotonic() + 30
    while True:
        logged = [inbound(interaction) for interaction in read_interactions(first, sender)]
        if sum(map(len, logged)) >= len(texts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [text for interaction in logged for text in interaction] == texts
