"""Erasure and retention across every real store: a PostgreSQL CRM, Rasa's SQL tracker
store on PostgreSQL, Redis (Rasa's tracker and lock stores, the web chat inbox, dedupe)
and the RabbitMQ events queue, each written by its real code. Afterwards every table,
every Redis key and every queued message is scanned for the erased customer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aio_pika
import pytest
import rasa.shared.core.events  # noqa: F401  (PikaEventBroker needs it imported)
import redis  # type: ignore[import-untyped]
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.stores import EnvLockStore, EnvTrackerStore, sql_tracker_kwargs
from bot.web_inbox import WebInbox
from connectors.dedupe import Deduplicator
from crm_bridge.conversation_stores import EventQueue, RedisStores, SqlTrackerEvents
from crm_bridge.db import get_engine, session_factory
from crm_bridge.erasure import erase_contact
from crm_bridge.retention import purge
from tests.conftest import POSTGRES_ADMIN_URL
from tests.integration.test_consumer_rabbitmq import AMQP_URL, delete_queues, publish_with_rasa
from tests.privacy_scan import queue_bodies, scan_queue, scan_redis, scan_sql
from tests.unit.test_erasure import SECRET, Customer, seed_customer

pytestmark = pytest.mark.integration

# A database of its own: the scan reads every key in it, and other tests' clean-ups
# (which delete "rapport*" in database 9) cannot remove this test's keys.
REDIS_URL = "redis://127.0.0.1:6379/13"


@contextmanager
def empty_postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (for Rasa's tracker store); dropped afterwards."""
    name = f"rapport_tracker_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def tracker_url() -> Iterator[str]:
    with empty_postgres_database() as url:
        yield url


@pytest.fixture
def redis_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.flushdb()
    yield client
    client.flushdb()


def exchange_of(queue: str) -> str:
    return f"{queue}_exchange"


@pytest.fixture
async def queue() -> AsyncIterator[str]:
    name = f"rapport_erase_{uuid.uuid4().hex[:8]}"
    yield name
    await delete_queues(name, exchange_of(name))


def rasa_events(customer: Customer) -> list[dict]:
    """The customer's conversation as Rasa's broker publishes it."""
    return [{**event, "sender_id": customer.rest_sender} for event in customer.events()]


def tracker(customer: Customer, sender: str) -> DialogueStateTracker:
    t0 = customer.started_at
    return DialogueStateTracker.from_events(
        sender,
        [
            SessionStarted(timestamp=t0),
            UserUttered(f"hi, {customer.words}, {customer.email}", {"name": "greet"}, timestamp=t0),
        ],
    )


async def write_conversation_stores(customer: Customer, tracker_url: str, queue: str) -> None:
    """What the bot side holds about a customer, written by the real code paths."""
    sql_store = SQLTrackerStore(domain=Domain.empty(), **sql_tracker_kwargs(tracker_url))
    redis_store = EnvTrackerStore(domain=Domain.empty())
    for sender in (customer.rest_sender, customer.telegram_sender):
        await sql_store.save(tracker(customer, sender))
        await redis_store.save(tracker(customer, sender))
    EnvLockStore().issue_ticket(customer.rest_sender, 60)
    inbox = WebInbox(REDIS_URL, "rapport:web:inbox")
    await inbox.put(customer.rest_sender, {"text": f"An agent writes to {customer.name}"})
    await inbox.close()
    await Deduplicator(REDIS_URL, "rapport:telegram:update").first_time(uuid.uuid4().hex[:6])
    await publish_with_rasa(queue, exchange_of(queue), rasa_events(customer))
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:  # an event the CRM once rejected, parked in the dead queue
        channel = await connection.channel()
        await channel.declare_queue(f"{queue}.dead", durable=True)
        body = f'{{"sender_id": "{customer.rest_sender}", "event": "user", "text": "x"}}'
        await channel.default_exchange.publish(
            aio_pika.Message(body.encode()), routing_key=f"{queue}.dead"
        )


async def scan_everything(crm_url: str, tracker_url: str, client, queue: str, needles) -> dict:
    return {
        "crm": scan_sql(crm_url, needles),
        "tracker": scan_sql(tracker_url, needles),
        "redis": scan_redis(client, needles),
        "queue": await scan_queue(AMQP_URL, queue, needles),
        "dead": await scan_queue(AMQP_URL, f"{queue}.dead", needles),
    }


async def test_erasure_leaves_no_trace_in_any_store(
    postgres_crm_url: str, tracker_url: str, redis_db, queue: str, tmp_path: Path
) -> None:
    erased = seed_customer(postgres_crm_url, tmp_path, order_number="61001")
    kept = seed_customer(postgres_crm_url, tmp_path, order_number="61002")
    for customer in (erased, kept):
        await write_conversation_stores(customer, tracker_url, queue)
    before = await scan_everything(postgres_crm_url, tracker_url, redis_db, queue, erased.needles)
    assert all(before.values()), before  # the scan sees the customer everywhere first
    kept_queue = [b for b in await queue_bodies(AMQP_URL, queue) if kept.rest_sender.encode() in b]

    receipt = await erase_contact(
        session_factory(postgres_crm_url),
        erased.email,
        "integration-test",
        SECRET,
        [SqlTrackerEvents(tracker_url), RedisStores(REDIS_URL), EventQueue(AMQP_URL, queue)],
    )

    after = await scan_everything(postgres_crm_url, tracker_url, redis_db, queue, erased.needles)
    assert after == {"crm": [], "tracker": [], "redis": [], "queue": [], "dead": []}
    others = await scan_everything(postgres_crm_url, tracker_url, redis_db, queue, kept.needles)
    assert all(others[store] for store in ("crm", "tracker", "redis", "queue")), others
    assert await queue_bodies(AMQP_URL, queue) == kept_queue  # same messages, same order
    lines = dict(line.strip().split(": ", 1) for line in receipt.lines()[1:])
    assert lines["tracker (sql)"] == "events 4"
    assert lines["redis"] == "trackers 2, web inboxes 1, locks 1, dedupe keys 0"
    assert lines["rabbitmq"] == f"queued events {len(rasa_events(erased)) + 1}"
    assert lines["crm"].startswith("inbox reviews 0, handoffs 1,")


async def test_retention_purges_old_trackers_in_sql_and_redis(
    postgres_crm_url: str, tracker_url: str, redis_db, queue: str, tmp_path: Path
) -> None:
    old_start = (datetime.now(timezone.utc) - timedelta(days=400)).timestamp()
    old = seed_customer(postgres_crm_url, tmp_path, started_at=old_start, order_number="62001")
    recent = seed_customer(postgres_crm_url, tmp_path, order_number="62002")
    for customer in (old, recent):
        await write_conversation_stores(customer, tracker_url, queue)
    factory = session_factory(postgres_crm_url)

    report = await asyncio.to_thread(purge, factory, 365, tracker_url, REDIS_URL)

    lines = dict(line.strip().split(": ", 1) for line in report.lines()[1:])
    assert lines["tracker (sql)"] == "events 4" and lines["redis"] == "trackers 2"
    gone = [old.rest_sender, old.telegram_sender, old.words]
    assert scan_sql(tracker_url, gone) == []
    assert [f for f in scan_redis(redis_db, gone) if "tracker" in f] == []
    transcripts = [f for f in scan_sql(postgres_crm_url, gone) if "interaction_messages" in f]
    assert transcripts == []
    assert scan_sql(tracker_url, [recent.words])
    assert [f for f in scan_redis(redis_db, [recent.words]) if "tracker" in f]
    again = await asyncio.to_thread(purge, factory, 365, tracker_url, REDIS_URL)
    assert all(n == 0 for r in again.stores for n in r.removed.values())
