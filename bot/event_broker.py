"""The event broker that turns Rasa's event stream into CRM interactions.

With ``RABBITMQ_URL`` set, events go to a durable RabbitMQ queue (Rasa's own
``PikaEventBroker``) and ``python -m crm_bridge.consumer`` writes them to the CRM, so a
CRM outage only delays the log. Without it (the embedded default), this broker writes
the interaction log in-process, on a background thread so that a slow database never
blocks a conversation; batches that fail are kept and retried, and flushed on close.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import rasa.shared.core.events  # noqa: F401  (PikaEventBroker uses it without importing it)
from rasa.core.brokers.broker import EventBroker
from rasa.core.brokers.pika import PikaEventBroker
from rasa.utils.endpoints import EndpointConfig

from bot import settings as bot_settings
from crm_bridge.settings import redact_url

logger = logging.getLogger(__name__)

_STOP = object()
RETRY_DELAY_SECONDS = 2.0
# How long a turn waits for RabbitMQ to confirm its events (then they are kept in memory).
PUBLISH_WAIT_SECONDS = 2.0
MAX_BATCH = 200


class InteractionLogBroker(EventBroker):
    """Writes Rasa events to the CRM interaction log from a background thread."""

    def __init__(self, crm_database_url: str | None = None) -> None:
        from crm_bridge.interaction_log import InteractionLog

        crm = bot_settings.current().crm
        self._log = InteractionLog(
            crm_database_url or crm.database_url, outbox_backend=crm.crm_backend
        )
        self._queue: queue.Queue[Any] = queue.Queue()
        # Counts events published but not yet written, so flush() knows when it is done.
        self._unwritten = 0
        self._written = threading.Condition()
        self._worker = threading.Thread(
            target=self._run, name="interaction-log-writer", daemon=True
        )
        self._worker.start()

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig | None, event_loop: Any = None
    ) -> EventBroker:
        """RabbitMQ when ``RABBITMQ_URL`` is set, otherwise the in-process log writer."""
        settings = bot_settings.current()
        if settings.rabbitmq_url:
            return await connect_rabbitmq(settings, event_loop)
        logger.info("Event broker: in-process CRM interaction log")
        return cls()

    def publish(self, event: dict[str, Any]) -> None:
        """Queue one event (a dict with ``sender_id``) for the interaction log."""
        with self._written:
            self._unwritten += 1
        self._queue.put(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is written; False if that took longer than ``timeout``."""
        with self._written:
            return self._written.wait_for(lambda: self._unwritten == 0, timeout)

    async def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.flush)
        self._queue.put(_STOP)

    def _run(self) -> None:
        from crm_bridge.errors import RapportError

        pending: list[dict[str, Any]] = []
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            pending.append(item)
            # Drain what else is waiting so a burst of events becomes one transaction.
            while len(pending) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._write(pending)
                    return
                pending.append(item)
            while pending:
                try:
                    self._log.record_events(pending)
                    self._mark_written(len(pending))
                    pending = []
                except RapportError as error:
                    # Keep the batch: the log is idempotent, so retrying is safe.
                    logger.warning(
                        "Interaction log unavailable (%s); retrying %d events in %.0f s",
                        type(error).__name__,
                        len(pending),
                        RETRY_DELAY_SECONDS,
                    )
                    time.sleep(RETRY_DELAY_SECONDS)
                except Exception:
                    # A bug, not an outage: retrying would block every later event.
                    logger.exception("Dropping %d events the log could not record", len(pending))
                    self._mark_written(len(pending))
                    pending = []

    def _mark_written(self, count: int) -> None:
        with self._written:
            self._unwritten -= count
            self._written.notify_all()

    def _write(self, events: list[dict[str, Any]]) -> None:
        try:
            self._log.record_events(events)
        except Exception:
            logger.exception("Could not write %d events at shutdown", len(events))
        self._mark_written(len(events))


class QuietPikaEventBroker(PikaEventBroker):
    """Rasa's RabbitMQ broker, with what it logs about a failed publish made safe.

    While RabbitMQ is away (restarting, unreachable), Rasa keeps each event it could not
    publish in memory and publishes it again once its robust connection is back; events
    are persistent and the queue durable, so what RabbitMQ confirmed survives its
    restart. Rasa logs every failed event in full, the customer's text and the broker
    URL with its password included; here the log says only how many events wait.
    What waits in memory is lost if this Rasa process dies before RabbitMQ is back.
    """

    async def _publish(self, event: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        if self._exchange is None:
            return
        try:
            await self._exchange.publish(self._message(event, headers), "")
        except Exception as error:
            self._unpublished_events.append(event)
            logger.warning(
                "RabbitMQ did not take an event (%s); kept in memory to publish after "
                "reconnecting (%d waiting)",
                type(error).__name__,
                len(self._unpublished_events),
            )

    async def published(self, timeout: float = PUBLISH_WAIT_SECONDS) -> None:
        """Wait (at most ``timeout``) until the events handed over so far are confirmed by
        RabbitMQ or kept for later.

        Rasa publishes from background tasks, so a reply can reach the customer before
        its events reach the queue; with several Rasa processes the customer's next
        message, handled by another process, could then overtake them in the queue and
        the CRM would see a session's messages before its start. The tracker store
        waits here before the turn ends (``bot.stores``), so a conversation's events
        enter the queue in order.
        """
        pending = [task for task in self._background_tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def _publish_unpublished_messages(self, *args: Any, **kwargs: Any) -> None:
        if self._unpublished_events:
            logger.info(
                "RabbitMQ is back: publishing %d kept events", len(self._unpublished_events)
            )
        super()._publish_unpublished_messages(*args, **kwargs)


async def events_published(broker: EventBroker | None) -> None:
    """Wait until ``broker`` has taken the events published so far (RabbitMQ only: the
    in-process log keeps their order itself)."""
    if isinstance(broker, QuietPikaEventBroker):
        await broker.published()


async def connect_rabbitmq(
    settings: bot_settings.Settings, event_loop: Any = None
) -> PikaEventBroker:
    """Rasa's RabbitMQ broker, publishing to the durable queue the CRM consumer reads."""
    parts = urlsplit(settings.rabbitmq_url)
    logger.info(
        "Event broker: RabbitMQ at %s, queue %s",
        redact_url(settings.rabbitmq_url),
        settings.crm.events_queue,
    )
    broker = QuietPikaEventBroker(
        host=settings.rabbitmq_url,
        username=parts.username or "guest",
        password=parts.password or "guest",
        port=parts.port or 5672,
        queues=[settings.crm.events_queue],
        exchange_name=settings.crm.events_exchange,
        event_loop=event_loop,
        connection_attempts=5,
        retry_delay_in_seconds=2,
    )
    await broker.connect()
    return broker
