"""The production set-up end to end: Rasa with Redis (tracker + lock store) and RabbitMQ
(event broker). The CRM consumer is started only after the conversation, as after an
outage: the transcript must arrive complete, once. A web chat message stored in Redis by
another instance reaches the page waiting on this one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from bot.settings import PROJECT_ROOT
from bot.web_inbox import REDIS_CHECK_SECONDS, WebInbox
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.e2e.conftest import TELEGRAM_TOKEN, BotServers, start_bot_servers, stop_processes
from tests.e2e.test_conversations import inbound, interactions_of, reply_text
from tests.e2e.test_telegram import message_update
from tests.fakes.telegram_api import FakeTelegramApi
from tests.integration.test_consumer_rabbitmq import delete_queues

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/8"


@pytest.fixture(scope="module")
def polling_telegram() -> Iterator[FakeTelegramApi]:
    api = FakeTelegramApi(TELEGRAM_TOKEN).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def production_servers(
    trained_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    polling_telegram: FakeTelegramApi,
) -> Iterator[BotServers]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        # Telegram in polling mode (development behind NAT), deduplicated in Redis.
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_MODE": "polling",
        "TELEGRAM_API_BASE_URL": polling_telegram.base_url,
        "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.05",
        "REDIS_URL": REDIS_URL,
        "RABBITMQ_URL": AMQP_URL,
        "RAPPORT_EVENTS_QUEUE": f"rapport_e2e_{suffix}",
        "RAPPORT_EVENTS_EXCHANGE": f"rapport_e2e_exchange_{suffix}",
    }
    servers, processes = start_bot_servers(trained_model, tmp_path_factory.mktemp("prod"), env)
    yield servers
    stop_processes(processes)
    asyncio.run(delete_queues(env["RAPPORT_EVENTS_QUEUE"], env["RAPPORT_EVENTS_EXCHANGE"]))
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    for key in client.scan_iter("rapport*"):
        client.delete(key)


def test_conversation_logged_after_the_consumer_comes_back(
    production_servers: BotServers,
) -> None:
    servers = production_servers
    sender = f"e2e-prod-{uuid.uuid4().hex[:8]}"
    gateway = SqlCrmGateway.from_url(servers.crm_url)
    gateway.link_identity(
        "rest", sender, gateway.verify_order_email("10001", "alice@example.com").contact_id
    )

    replies = [servers.say(sender, text) for text in ("hi", "where is my order 10001?")]
    assert "DPD-5521" in reply_text(replies[1])

    # The conversation lives in Redis, shared by every Rasa instance.
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    assert any(sender in key.decode() for key in client.scan_iter("rapport*"))

    # No consumer yet: nothing reached the CRM, the events wait in the durable queue.
    time.sleep(1)
    assert interactions_of(servers, sender, lambda d: True) == []

    consumer = subprocess.Popen(
        [sys.executable, "-m", "crm_bridge.consumer"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **servers.env},
        stdout=(servers.log_dir / "consumer.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        [interaction] = interactions_of(
            servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 2
        )
    finally:
        consumer.terminate()
        consumer.wait(20)
    assert inbound(interaction) == ["hi", "where is my order 10001?"]
    assert sum(1 for direction, _ in interaction["messages"] if direction == "outbound") >= 2
    assert interaction["outcome"] == "resolved_by_bot"
    assert consumer.returncode == 0, (servers.log_dir / "consumer.log").read_text()[-2000:]


def test_telegram_polling_feeds_the_same_pipeline(
    production_servers: BotServers, polling_telegram: FakeTelegramApi
) -> None:
    assert polling_telegram.wait_for("deleteWebhook", 1)
    chat = 5550001
    update = message_update(chat, "what are your opening hours?")
    polling_telegram.queue_update(update)
    polling_telegram.queue_update(update)  # delivered twice: answered once
    [answer] = polling_telegram.sent_to(chat, 1)
    assert "Monday to Friday" in answer.params["text"]
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    assert client.exists(f"rapport:telegram:update:{update['update_id']}")
    assert client.ttl(f"rapport:telegram:update:{update['update_id']}") > 23 * 3600


def test_a_web_chat_page_gets_what_another_instance_stored(
    production_servers: BotServers,
) -> None:
    sender = f"web-e2e-{uuid.uuid4().hex[:8]}"
    message = {"text": "Hi, Dana here (written on another instance).", "agent": True}

    async def store_as_another_instance() -> None:
        other = WebInbox(REDIS_URL)
        try:
            await other.put(sender, message)
        finally:
            await other.close()

    with ThreadPoolExecutor(1) as pool:
        # The page is already waiting when the message is stored elsewhere.
        waiting = pool.submit(
            requests.get,
            f"{production_servers.rasa_url}/chat/inbox",
            params={"sender": sender},
            timeout=40,
        )
        time.sleep(1)
        stored_at = time.monotonic()
        asyncio.run(store_as_another_instance())
        answer = waiting.result()
    assert answer.status_code == 200 and answer.json() == [message]
    assert time.monotonic() - stored_at < REDIS_CHECK_SECONDS + 3
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    assert not client.exists(f"rapport:web:inbox:{sender}")  # taken: delivered once


def test_an_erased_customer_is_in_no_store_and_others_are_untouched(
    production_servers: BotServers, polling_telegram: FakeTelegramApi
) -> None:
    """Chloé talks over REST (proving herself with an emailed code and changing her phone)
    and over Telegram (a deep link), with a web chat message waiting for her in Redis and
    her events waiting in RabbitMQ; then `python -m crm_bridge erase` and a scan of every
    table, Redis key, queued message and mail."""
    from crm_bridge import settings as crm_settings
    from crm_bridge.db import session_factory
    from crm_bridge.link_tokens import LinkTokens, identity_secret
    from tests.e2e.test_identity_proof import latest_code
    from tests.privacy_scan import scan_queue, scan_redis, scan_sql

    servers = production_servers
    gateway = SqlCrmGateway.from_url(servers.crm_url)
    chloe = gateway.find_contact_by_email("chloe@example.com")
    assert chloe is not None
    rest_sender = f"e2e-erase-{uuid.uuid4().hex[:8]}"
    servers.say(rest_sender, "I want to change my phone number")
    servers.say(rest_sender, "chloe@example.com")
    servers.say(rest_sender, latest_code(servers, "chloe@example.com"))
    done = servers.say(rest_sender, "+44 7700 900777")
    assert "+447700900777" in reply_text(done)

    settings = crm_settings.load({"RAPPORT_VAR_DIR": servers.env["RAPPORT_VAR_DIR"]})
    token = LinkTokens(session_factory(servers.crm_url), identity_secret(settings)).issue(chloe.id)
    chat = 5550777
    start = message_update(chat, f"/start {token}")
    # Polling asks for updates after the last one it saw: this one must be newer than the
    # (random) ids of the earlier tests' updates.
    start["update_id"] = 100_000_001
    polling_telegram.queue_update(start)
    [welcome] = polling_telegram.sent_to(chat, 1)
    assert welcome.params["text"].startswith("Hi Chloé")

    async def leave_a_web_message() -> None:
        inbox = WebInbox(REDIS_URL)
        try:
            await inbox.put(rest_sender, {"text": "Chloé, your parcel...", "agent": True})
        finally:
            await inbox.close()

    asyncio.run(leave_a_web_message())
    # Alice, who must be untouched: a linked conversation of her own.
    alice_sender = f"e2e-keep-{uuid.uuid4().hex[:8]}"
    alice = gateway.find_contact_by_email("alice@example.com")
    assert alice is not None
    gateway.link_identity("rest", alice_sender, alice.id, proof="link_token")
    servers.say(alice_sender, "hi")

    erase = subprocess.run(
        [sys.executable, "-m", "crm_bridge", "erase", "chloe@example.com", "--yes"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **servers.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert erase.returncode == 0, erase.stderr[-2000:]
    assert "Chloé" not in erase.stdout and "chloe@" not in erase.stdout  # a receipt of counts

    # The trackers live in Redis here (the tracker store of this set-up).
    needles = ["chloe@example.com", "Chloé Dubois", "+447700900777", rest_sender, str(chat)]
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    queue = servers.env["RAPPORT_EVENTS_QUEUE"]
    found = [
        *scan_sql(servers.crm_url, needles),
        *scan_redis(client, needles),
        *asyncio.run(scan_queue(AMQP_URL, queue, needles)),
        *(
            f"{mail.name}: {needle}"
            for mail in (Path(servers.env["RAPPORT_VAR_DIR"]) / "outbox").glob("*.eml")
            for needle in needles
            if needle in mail.read_text()
        ),
    ]
    assert found == []
    # Alice is still there: her contact, her link, her conversation in Redis.
    kept = gateway.find_contact_by_identity("rest", alice_sender)
    assert kept is not None and kept.email == "alice@example.com"
    assert any(alice_sender in key.decode() for key in client.scan_iter("rapport*"))
