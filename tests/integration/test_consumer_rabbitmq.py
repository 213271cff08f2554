"""Rasa's own RabbitMQ broker -> durable queue -> our consumer -> CRM transcript.

The consumer is started only after the conversation happened, as when it (or the CRM)
was down while customers were talking: nothing may be lost, and nothing duplicated.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest
import rasa.shared.core.events  # noqa: F401  (PikaEventBroker needs it imported)
from rasa.core.brokers.pika import PikaEventBroker
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.consumer import EventConsumer
from crm_bridge.db import session_factory
from tests.unit.test_interaction_log import conversation

pytestmark = pytest.mark.integration

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def delete_queues(queue: str, exchange: str) -> None:
    """Remove a test's queue, its dead-letter queue and its exchange."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        for name in (queue, f"{queue}.dead"):
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)


@pytest.fixture
async def names():
    suffix = uuid.uuid4().hex[:8]
    queue, exchange = f"rapport_it_{suffix}", f"rapport_it_exchange_{suffix}"
    yield queue, exchange
    await delete_queues(queue, exchange)


async def publish_with_rasa(queue: str, exchange: str, events: list[dict]) -> None:
    broker = PikaEventBroker(
        AMQP_URL,
        "guest",
        "guest",
        queues=[queue],
        exchange_name=exchange,
        connection_attempts=3,
        retry_delay_in_seconds=1,
    )
    await broker.connect()
    for event in events:
        broker.publish(event)
    while broker._background_tasks:  # wait for Rasa's publishing tasks to finish
        await asyncio.sleep(0.05)
    await broker.close()


async def consume_until(consumer: EventConsumer, processed: int, timeout: float = 20) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(int(timeout * 20)):
            if consumer.processed >= processed:
                break
            await asyncio.sleep(0.05)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


def transcript(crm_url: str) -> list[list[str]]:
    with session_factory(crm_url)() as session:
        rows = session.execute(select(models.Interaction).order_by(models.Interaction.id))
        return [[m.text for m in i.messages] for i in rows.scalars()]


async def test_events_published_while_the_consumer_was_down_are_logged_once(
    crm_url: str, names: tuple[str, str]
) -> None:
    queue, exchange = names
    events = conversation("rabbit-1", 1_700_000_000.0)
    await publish_with_rasa(queue, exchange, events)  # no consumer running yet

    consumer = EventConsumer(AMQP_URL, crm_url, queue=queue, exchange=exchange)
    await consume_until(consumer, len(events))
    assert consumer.processed == len(events)
    expected = [["hi", "Hello! How can I help?", "thanks 🙏", "You're welcome!"]]
    assert transcript(crm_url) == expected

    # A redelivery (same events again, e.g. after a crash before the ack) adds nothing.
    await publish_with_rasa(queue, exchange, events)
    again = EventConsumer(AMQP_URL, crm_url, queue=queue, exchange=exchange)
    await consume_until(again, len(events))
    assert transcript(crm_url) == expected


async def test_a_message_that_is_not_an_event_goes_to_the_dead_letter_queue(
    crm_url: str, names: tuple[str, str]
) -> None:
    queue, exchange = names
    consumer = EventConsumer(AMQP_URL, crm_url, queue=queue, exchange=exchange)
    task = asyncio.create_task(consumer.run())
    await asyncio.sleep(1)  # the consumer declares the queue and the dead-letter queue
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(b"{oops"), routing_key=queue)
        good = conversation("rabbit-2", 1_700_000_000.0)[3]
        await channel.default_exchange.publish(
            aio_pika.Message(json.dumps(good).encode()), routing_key=queue
        )
        for _ in range(100):
            if consumer.processed >= 1:
                break
            await asyncio.sleep(0.05)
        dead = await channel.declare_queue(f"{queue}.dead", durable=True, passive=True)
        message = await dead.get(timeout=5, fail=False)
        assert message is not None and message.body == b"{oops"
        await message.ack()
    consumer.stop()
    await asyncio.wait_for(task, 10)
    assert transcript(crm_url) == [["hi"]]


async def test_events_wait_in_the_queue_while_the_crm_is_down(
    tmp_path, names: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import prepare_crm

    monkeypatch.setattr("crm_bridge.consumer.RETRY_DELAY_SECONDS", 0.1)
    queue, exchange = names
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"  # not migrated yet: every write fails
    events = conversation("rabbit-3", 1_700_000_000.0)
    await publish_with_rasa(queue, exchange, events)
    consumer = EventConsumer(AMQP_URL, crm_url, queue=queue, exchange=exchange)
    task = asyncio.create_task(consumer.run())
    await asyncio.sleep(1.5)
    # Stuck on the first event that needs the database, retrying, not acknowledging.
    assert consumer.processed < len(events)
    prepare_crm(crm_url)  # the CRM is back
    for _ in range(200):
        if consumer.processed >= len(events):
            break
        await asyncio.sleep(0.05)
    consumer.stop()
    await asyncio.wait_for(task, 10)
    assert transcript(crm_url) == [["hi", "Hello! How can I help?", "thanks 🙏", "You're welcome!"]]
