"""The conversation stores outside the CRM, known generically: Rasa's SQL and Redis
tracker stores, our Redis keys (locks, web chat inbox, dedupe) and the RabbitMQ events
queue. Erasure (``crm_bridge.erasure``) and retention (``crm_bridge.retention``) use them.

``crm_bridge`` does not import the bot, Rasa or the connectors: the table and key names
they write are constants here, each saying where it comes from, and
tests/unit/test_erasure.py checks them against the connectors' code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import column, delete, inspect, table
from sqlalchemy.engine import Engine, make_url

from crm_bridge.db import get_engine
from crm_bridge.errors import Unavailable
from crm_bridge.settings import CrmSettings

# Rasa 3.6 SQLTrackerStore (rasa/core/tracker_store.py, SQLTrackerStore.SQLEvent): one
# row per event in table "events", keyed by "sender_id", with a float epoch "timestamp".
TRACKER_EVENTS = table("events", column("sender_id"), column("timestamp"))
# Rasa 3.6 RedisTrackerStore/RedisLockStore keys: key_prefix + ":tracker:" / ":lock:" +
# sender id; bot/stores.py gives both the prefix "rapport", and puts the locks in Redis
# database 1 when REDIS_URL names no database.
TRACKER_KEY = "rapport:tracker:{sender}"
LOCK_KEY = "rapport:lock:{sender}"
LOCK_DEFAULT_DB = 1
# connectors/web.py: WebInbox(..., "rapport:web:inbox"), a list per sender at
# "<namespace>:<sender id>" (bot/web_inbox.py, WebInbox._key).
WEB_INBOX_KEY = "rapport:web:inbox:{sender}"
# connectors/telegram.py and slack.py: Deduplicator(..., "rapport:telegram:update" /
# "rapport:slack:event"), keys "<namespace>:<delivery id>" (connectors/dedupe.py). They
# hold a platform's update or event id and "1", never a sender id: erasure scans them
# and removes any that names the customer (none is expected); they expire within 24 h.
DEDUPE_PATTERNS = ("rapport:telegram:update:*", "rapport:slack:event:*")
REDIS_TIMEOUT_SECONDS = 5.0
# A queue longer than this is not scanned (its messages are held in memory meanwhile).
MAX_QUEUE_MESSAGES = 100_000


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched (0 when the driver cannot tell)."""
    return max(int(result.rowcount or 0), 0)


@dataclass(frozen=True)
class StoreReport:
    """What one store removed: ``{what: count}``, or a note such as "not configured"."""

    store: str
    removed: Mapping[str, int] = field(default_factory=dict)
    note: str = ""

    def line(self) -> str:
        """One line of the receipt, e.g. ``redis: trackers 1, web inbox 1``."""
        counts = ", ".join(f"{what} {count}" for what, count in self.removed.items())
        text = "; ".join(part for part in (counts, self.note) if part)
        return f"{self.store}: {text or 'nothing'}"

    def as_json(self) -> dict[str, Any]:
        """Counts and note only: the receipt holds no personal data."""
        return {"removed": dict(self.removed), **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class Subject:
    """Who is erased: the contact (and contacts merged into it) and their identifiers."""

    contact_id: int
    contact_ids: frozenset[int]
    hash_input: str
    sender_ids: frozenset[str]
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()


class ConversationStore(Protocol):
    """A store outside the CRM that keeps conversations by Rasa sender id."""

    name: str

    async def erase(self, subject: Subject) -> StoreReport:
        """Forget everything of ``subject``'s senders; say what was removed."""


class NotConfigured:
    """A store this deployment does not use (its URL is empty)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def erase(self, subject: Subject) -> StoreReport:
        """Nothing to erase."""
        return StoreReport(self.name, note="not configured")


def tracker_engine(url: str) -> Engine | None:
    """The tracker database's engine, or None when it has no ``events`` table yet (an
    SQLite file that does not exist is not created by looking at it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        if not parsed.database or not Path(parsed.database).exists():
            return None
    engine = get_engine(url)
    return engine if inspect(engine).has_table("events") else None


class SqlTrackerEvents:
    """Rasa's SQL tracker store: every event row of the subject's senders."""

    name = "tracker (sql)"

    def __init__(self, url: str) -> None:
        self.url = url

    async def erase(self, subject: Subject) -> StoreReport:
        """Delete the events of the subject's senders."""
        return await asyncio.to_thread(self._erase, subject.sender_ids)

    def _erase(self, senders: Collection[str]) -> StoreReport:
        engine = tracker_engine(self.url)
        if engine is None:
            return StoreReport(self.name, note="no events table")
        with engine.begin() as connection:
            result = connection.execute(
                delete(TRACKER_EVENTS).where(TRACKER_EVENTS.c.sender_id.in_(list(senders)))
            )
        return StoreReport(self.name, {"events": rowcount(result)})


def redis_error() -> type[Exception]:
    """redis-py's base error (imported lazily: Redis is optional)."""
    from redis.exceptions import RedisError  # type: ignore[import-untyped]

    error: type[Exception] = RedisError
    return error


def redis_client(url: str, db: int | None = None) -> Any:
    """A synchronous Redis client with short timeouts (``db`` overrides the URL's)."""
    import redis  # type: ignore[import-untyped]

    extra = {} if db is None else {"db": db}
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        **extra,
    )


def _text(raw: bytes | str | None) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


def _dedupe_key_names(subject: Subject, key: bytes, value: bytes | None) -> bool:
    # Exact matches only: delivery ids and chat ids are both numbers, so a substring
    # test would take another customer's delivery for this one's.
    name, content = _text(key), _text(value).strip()
    return any(name.endswith(f":{s}") or content == s for s in subject.sender_ids) or any(
        needle.lower() in f"{name} {content}".lower() for needle in subject.emails | subject.phones
    )


class RedisStores:
    """Redis: the subject's trackers, conversation locks and web chat inboxes, and any
    dedupe key that names them."""

    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url

    async def erase(self, subject: Subject) -> StoreReport:
        """Delete the subject's keys."""
        try:
            return await asyncio.to_thread(self._erase, subject)
        except OSError as error:
            raise Unavailable(f"Redis did not answer ({type(error).__name__})") from error

    def _erase(self, subject: Subject) -> StoreReport:
        RedisError = redis_error()
        senders = sorted(subject.sender_ids)
        try:
            client = redis_client(self.url)
            done = {
                "trackers": self._delete(client, TRACKER_KEY, senders),
                "web inboxes": self._delete(client, WEB_INBOX_KEY, senders),
                "locks": self._delete(client, LOCK_KEY, senders),
            }
            if not names_database(self.url):
                locks = redis_client(self.url, LOCK_DEFAULT_DB)
                done["locks"] += self._delete(locks, LOCK_KEY, senders)
            dedupe = 0
            for pattern in DEDUPE_PATTERNS:
                for key in client.scan_iter(match=pattern, count=1000):
                    if _dedupe_key_names(subject, key, client.get(key)):
                        dedupe += client.delete(key)
            done["dedupe keys"] = dedupe
        except RedisError as error:
            raise Unavailable(f"Redis did not answer ({type(error).__name__})") from error
        return StoreReport(self.name, done)

    @staticmethod
    def _delete(client: Any, template: str, senders: Sequence[str]) -> int:
        if not senders:
            return 0
        return int(client.delete(*(template.format(sender=s) for s in senders)))


def names_database(url: str) -> bool:
    """Does a ``redis://host/<db>`` URL name its database?"""
    from urllib.parse import urlsplit

    return bool(urlsplit(url).path.strip("/"))


class EventQueue:
    """RabbitMQ: conversation events of the subject still waiting in the events queue
    (and its ``.dead`` queue) for the consumer.

    Approach: ``basic.get`` every message without acknowledging it; acknowledge (remove)
    those whose ``sender_id`` is the subject's; reject the others with requeue, which
    puts them back at their original positions, so order is kept and nothing is copied.
    Limits: a message the running consumer has already fetched (its prefetch window) is
    invisible here and will still be written to the CRM, so run the erasure with the
    consumer stopped, or erase again afterwards; while the scan holds the messages the
    consumer may process newer ones first; at most ``MAX_QUEUE_MESSAGES`` are held.
    """

    name = "rabbitmq"

    def __init__(self, amqp_url: str, queue: str) -> None:
        self.amqp_url = amqp_url
        self.queues = (queue, f"{queue}.dead")

    async def erase(self, subject: Subject) -> StoreReport:
        """Remove the subject's queued events."""
        import aio_pika

        removed = 0
        try:
            connection = await aio_pika.connect(self.amqp_url, timeout=10)
            async with connection:
                for name in self.queues:
                    channel = await connection.channel()
                    try:
                        queue = await channel.declare_queue(name, passive=True)
                    except aio_pika.exceptions.ChannelClosed:
                        continue  # no such queue: nothing waits in it
                    removed += await self._filter(queue, subject)
                    await channel.close()
        except (aio_pika.exceptions.AMQPError, OSError, asyncio.TimeoutError) as error:
            raise Unavailable(f"RabbitMQ did not answer ({type(error).__name__})") from error
        return StoreReport(self.name, {"queued events": removed})

    @staticmethod
    async def _filter(queue: Any, subject: Subject) -> int:
        held: list[Any] = []
        removed = 0
        try:
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                if _event_sender(message.body) in subject.sender_ids:
                    await message.ack()
                    removed += 1
                else:
                    held.append(message)
                if len(held) > MAX_QUEUE_MESSAGES:
                    raise Unavailable("The events queue is too long to scan now.")
        finally:
            for message in held:
                await message.nack(requeue=True)
        return removed


def _event_sender(body: bytes) -> str | None:
    try:
        event = json.loads(body.decode("utf-8"))
    except ValueError:
        return None
    sender = event.get("sender_id") if isinstance(event, dict) else None
    return str(sender) if sender is not None else None


class OutboxFiles:
    """The embedded mailer's folder (``var/outbox/``, crm_bridge/mailer.py OutboxMailer):
    the ``.eml`` files addressed to, or naming, the subject's email."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def erase(self, subject: Subject) -> StoreReport:
        """Delete the subject's emails."""
        return await asyncio.to_thread(self._erase, subject)

    def _erase(self, subject: Subject) -> StoreReport:
        removed = 0
        needles = [email.lower() for email in subject.emails]
        for path in sorted(self.folder.glob("*.eml")) if needles else []:
            content = path.read_bytes().decode("utf-8", "replace").lower()
            if any(needle in content for needle in needles):
                path.unlink(missing_ok=True)
                removed += 1
        return StoreReport(self.name, {"emails": removed})


def stores_from_settings(crm: CrmSettings) -> list[ConversationStore]:
    """The conversation stores a :class:`crm_bridge.settings.CrmSettings` configures."""
    return [
        SqlTrackerEvents(crm.tracker_database_url)
        if crm.tracker_database_url
        else NotConfigured(SqlTrackerEvents.name),
        RedisStores(crm.redis_url) if crm.redis_url else NotConfigured(RedisStores.name),
        EventQueue(crm.rabbitmq_url, crm.events_queue)
        if crm.rabbitmq_url
        else NotConfigured(EventQueue.name),
        # Looked at even with SMTP: files from before SMTP was set up may still be there.
        OutboxFiles(crm.var_dir / "outbox"),
    ]
