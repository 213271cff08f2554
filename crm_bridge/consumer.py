"""``python -m crm_bridge.consumer``: RabbitMQ -> CRM interaction log.

Reads Rasa's events from the durable queue that Rasa's ``PikaEventBroker`` publishes
to. A message is acknowledged only after its events are committed, so nothing is lost
when the CRM or this process is down: RabbitMQ keeps it and delivers it again, and the
interaction log ignores what it has already recorded. A message that is not a Rasa
event is moved to ``<queue>.dead`` (never logged with its content) instead of being
retried for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from crm_bridge import settings
from crm_bridge.errors import CrmUnavailable, RapportError
from crm_bridge.interaction_log import InteractionLog

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
RETRY_DELAY_SECONDS = 2.0
MAX_RETRY_DELAY_SECONDS = 30.0
PREFETCH = 20


def decode(body: bytes) -> dict[str, Any]:
    """The event in a message body; ``ValueError`` if it is not a JSON object."""
    event = json.loads(body.decode("utf-8"))
    if not isinstance(event, dict) or "sender_id" not in event or "event" not in event:
        raise ValueError("not a Rasa event")
    return event


class EventConsumer:
    """Consumes one queue into the interaction log until ``stop()`` is called."""

    def __init__(
        self,
        amqp_url: str,
        crm_url: str,
        queue: str | None = None,
        exchange: str | None = None,
    ) -> None:
        self.amqp_url = amqp_url
        self.queue_name = queue or settings.events_queue()
        self.exchange_name = exchange or settings.events_exchange()
        self.log = InteractionLog(crm_url, outbox_backend=settings.load().crm_backend)
        self._stopped = asyncio.Event()
        # aio-pika runs one callback task per delivery; the (FIFO) lock makes them
        # record events in delivery order, which the session boundaries rely on.
        self._in_order = asyncio.Lock()
        self.processed = 0

    def stop(self) -> None:
        """Ask the consumer to finish the message in hand and return."""
        self._stopped.set()

    async def run(self) -> None:
        """Connect (retrying with backoff) and consume until stopped."""
        delay = RETRY_DELAY_SECONDS
        while not self._stopped.is_set():
            try:
                await self._consume()
                return
            except (aio_pika.exceptions.AMQPError, OSError, asyncio.TimeoutError) as error:
                logger.warning(
                    "RabbitMQ at %s unavailable (%s); retrying in %.0f s",
                    settings.redact_url(self.amqp_url),
                    type(error).__name__,
                    delay,
                )
                await self._sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout=seconds)

    async def _consume(self) -> None:
        connection = await aio_pika.connect_robust(self.amqp_url, timeout=CONNECT_TIMEOUT_SECONDS)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            # Declared exactly as Rasa's PikaEventBroker declares them, so either side
            # may start first.
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.FANOUT
            )
            queue = await channel.declare_queue(self.queue_name, durable=True)
            await queue.bind(exchange, "")
            dead = await channel.declare_queue(f"{self.queue_name}.dead", durable=True)
            logger.info("Consuming %s into the CRM", self.queue_name)

            async def handle(message: AbstractIncomingMessage) -> None:
                async with self._in_order:
                    await self._handle(channel, dead.name, message)

            tag = await queue.consume(handle)
            await self._stopped.wait()
            await queue.cancel(tag)

    async def _handle(
        self,
        channel: aio_pika.abc.AbstractChannel,
        dead_queue: str,
        message: AbstractIncomingMessage,
    ) -> None:
        try:
            event = decode(message.body)
        except ValueError:
            logger.warning("Moving a message that is not a Rasa event to %s", dead_queue)
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=dead_queue,
            )
            await message.ack()
            return
        delay = RETRY_DELAY_SECONDS
        while True:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.log.record_events, [event]
                )
                break
            except CrmUnavailable:
                if self._stopped.is_set():
                    # Leave it in the queue for the next consumer.
                    await message.nack(requeue=True)
                    return
                logger.warning("CRM unavailable; retrying an event in %.0f s", delay)
                await self._sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
            except RapportError:
                logger.exception("The CRM rejected an event; moving it to %s", dead_queue)
                await channel.default_exchange.publish(
                    aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=dead_queue,
                )
                break
        await message.ack()
        self.processed += 1


def main(argv: list[str] | None = None) -> int:
    """Run the consumer with settings from the environment until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    amqp_url = settings.rabbitmq_url()
    if not amqp_url:
        logger.error("RABBITMQ_URL is not set; without it Rasa writes the log in-process.")
        return 2
    consumer = EventConsumer(amqp_url, settings.database_url())

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, consumer.stop)
        await consumer.run()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
