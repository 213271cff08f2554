"""With RABBITMQ_URL set, Rasa's events go to a durable RabbitMQ queue for the CRM consumer."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest
from rasa.core.brokers.pika import PikaEventBroker

from bot.event_broker import InteractionLogBroker

pytestmark = pytest.mark.integration

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def test_events_reach_the_durable_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    queue_name = f"rapport_test_{uuid.uuid4().hex[:8]}"
    exchange_name = f"rapport_test_exchange_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RABBITMQ_URL", RABBITMQ_URL)
    monkeypatch.setenv("RAPPORT_EVENTS_QUEUE", queue_name)
    monkeypatch.setenv("RAPPORT_EVENTS_EXCHANGE", exchange_name)

    broker = await InteractionLogBroker.from_endpoint_config(None)
    assert isinstance(broker, PikaEventBroker)
    event = {"sender_id": "it-sender", "event": "user", "timestamp": 1.5, "text": "héllo 👋"}
    try:
        broker.publish(event)
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, durable=True, passive=True)
            message = None
            for _ in range(50):
                message = await queue.get(fail=False)
                if message is not None:
                    break
                await asyncio.sleep(0.1)
            assert message is not None, "the event never reached the queue"
            await message.ack()
            assert json.loads(message.body) == event
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            await queue.delete(if_unused=False, if_empty=False)
            await channel.exchange_delete(exchange_name)
    finally:
        await broker.close()
