"""With RABBITMQ_URL set, Rasa's events go to a durable RabbitMQ queue for the CRM consumer."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import aio_pika
import pytest
from rasa.core.brokers.pika import PikaEventBroker

from bot.event_broker import InteractionLogBroker
from tests.fakes.tcp_proxy import CuttableProxy

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


async def drain(queue_name: str, expected: int, seconds: float) -> list[dict]:
    """Take messages off the queue until ``expected`` arrived or ``seconds`` passed."""
    bodies: list[dict] = []
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True, passive=True)
        deadline = asyncio.get_running_loop().time() + seconds
        while len(bodies) < expected and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.2)
                continue
            await message.ack()
            bodies.append(json.loads(message.body))
    return bodies


async def test_events_published_while_rabbitmq_is_away_arrive_once_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RabbitMQ restarting (a proxy in front of it cut, then restored): the broker keeps
    what it could not publish and sends it after reconnecting, each event once."""
    caplog.set_level(logging.INFO, logger="bot.event_broker")
    proxy = CuttableProxy("127.0.0.1", 5672)
    await proxy.restore()
    queue_name = f"rapport_test_{uuid.uuid4().hex[:8]}"
    exchange_name = f"rapport_test_exchange_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RABBITMQ_URL", f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
    monkeypatch.setenv("RAPPORT_EVENTS_QUEUE", queue_name)
    monkeypatch.setenv("RAPPORT_EVENTS_EXCHANGE", exchange_name)

    def event(number: int) -> dict:
        text = f"message number {number} about my parcel"
        return {"sender_id": "it-restart", "event": "user", "timestamp": number, "text": text}

    broker = await InteractionLogBroker.from_endpoint_config(None)
    try:
        broker.publish(event(1))
        assert [e["timestamp"] for e in await drain(queue_name, 1, 20)] == [1]

        await proxy.cut()
        await asyncio.sleep(0.5)
        for number in (2, 3, 4):
            broker.publish(event(number))
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        await proxy.restore()

        arrived = await drain(queue_name, 3, 60)
        assert sorted(e["timestamp"] for e in arrived) == [2, 3, 4]
        assert await drain(queue_name, 1, 2) == []  # and nothing twice
    finally:
        await broker.close()
        await proxy.cut()
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue_name)
            await channel.exchange_delete(exchange_name)
    assert "kept in memory to publish after reconnecting" in caplog.text
    assert "RabbitMQ is back: publishing" in caplog.text
    printed = capsys.readouterr()
    logged = printed.out + printed.err + caplog.text
    assert "about my parcel" not in logged and "guest:guest" not in logged


async def test_a_turns_events_are_confirmed_before_the_turn_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With several Rasa processes, a customer's next message may be handled by another
    process: the tracker store's save returns only once RabbitMQ took this turn's
    events, so they cannot be overtaken in the queue."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import SessionStarted, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.stores import EnvTrackerStore

    queue_name = f"rapport_test_{uuid.uuid4().hex[:8]}"
    exchange_name = f"rapport_test_exchange_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RABBITMQ_URL", RABBITMQ_URL)
    monkeypatch.setenv("RAPPORT_EVENTS_QUEUE", queue_name)
    monkeypatch.setenv("RAPPORT_EVENTS_EXCHANGE", exchange_name)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    broker = await InteractionLogBroker.from_endpoint_config(None)
    store = EnvTrackerStore(domain=Domain.empty(), event_broker=broker)
    sender = f"it-order-{uuid.uuid4().hex[:8]}"
    tracker = DialogueStateTracker.from_events(
        sender, [SessionStarted(timestamp=1.0), UserUttered("hi", {"name": "greet"}, timestamp=2.0)]
    )
    try:
        await store.save(tracker)
        # Nothing left in flight when save returns (checked before yielding to the loop).
        assert [task for task in broker._background_tasks if not task.done()] == []
        assert [e["event"] for e in await drain(queue_name, 2, 10)] == ["session_started", "user"]
    finally:
        await broker.close()
        store.red.delete(store.key_prefix + sender)
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue_name)
            await channel.exchange_delete(exchange_name)
