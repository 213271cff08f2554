"""Tracker and lock stores chosen from the environment.

``endpoints.yml`` names these classes, so one file serves both set-ups:
Redis (shared by every Rasa instance) when ``REDIS_URL`` is set, otherwise an SQL
tracker store (SQLite under ``var/`` by default) and an in-memory lock store, which
is right for the single-process embedded server.

Rasa instantiates a custom store by calling the configured class, so each class's
``__new__`` returns the concrete Rasa store it selected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rasa.core.brokers.broker import EventBroker
from rasa.core.lock_store import InMemoryLockStore, LockStore, RedisLockStore
from rasa.core.tracker_store import (
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
)
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker, get_trackers_for_conversation_sessions

from bot import settings as bot_settings
from bot.event_broker import events_published
from crm_bridge.settings import redact_url

logger = logging.getLogger(__name__)

# Rasa's Redis stores default to a 10 s socket timeout; a conversation should fail fast
# rather than hang when Redis is unreachable.
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0


def redis_kwargs(url: str) -> dict[str, Any]:
    """Split a ``redis://[:password@]host[:port][/db]`` URL into Rasa's store arguments."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise bot_settings.SettingsError("REDIS_URL must start with redis:// or rediss://")
    db_path = parts.path.lstrip("/")
    kwargs: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 6379,
        "password": unquote(parts.password) if parts.password else None,
        "use_ssl": parts.scheme == "rediss",
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    }
    if db_path:
        kwargs["db"] = int(db_path)
    return kwargs


def sql_tracker_kwargs(url: str) -> dict[str, Any]:
    """Split an SQLAlchemy URL into the arguments of Rasa's ``SQLTrackerStore``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return {
        "dialect": parsed.drivername,
        "host": parsed.host,
        "port": parsed.port,
        "db": parsed.database,
        "username": parsed.username,
        "password": parsed.password,
    }


class CurrentSessionRedisTrackerStore(RedisTrackerStore):
    """Rasa's Redis tracker store, keeping only the conversation's current session.

    Rasa's keeps a sender's whole history in one value and, on every save, reads it
    back, replays it and merges the new events into it: a Telegram customer keeps one
    sender id for months, so each turn costs more the longer they have been a customer.
    Only the current session is ever read back (``retrieve``), so that is all this one
    stores; earlier sessions live on in the CRM transcript, which the interaction log
    wrote as they happened. Writes are safe without the merge because the lock store
    lets one message at a time handle a conversation.
    """

    async def save(self, tracker: DialogueStateTracker, timeout: float | None = None) -> None:
        """Publish the new events (confirmed before the turn ends, so a conversation's
        events reach the queue in order), then store the tracker's current session alone."""
        await self.stream_events(tracker)
        await events_published(self.event_broker)
        if not timeout and self.record_exp:
            timeout = self.record_exp
        sessions = get_trackers_for_conversation_sessions(tracker)
        current = sessions[-1] if sessions else tracker
        self.red.set(
            self.key_prefix + tracker.sender_id, self.serialise_tracker(current), ex=timeout
        )


class EnvTrackerStore(TrackerStore):
    """Redis when ``REDIS_URL`` is set, else SQL at ``TRACKER_DATABASE_URL``."""

    def __new__(
        cls,
        host: str | None = None,
        domain: Domain | None = None,
        event_broker: EventBroker | None = None,
        **kwargs: Any,
    ) -> TrackerStore:
        settings = bot_settings.current()
        if settings.redis_url:
            logger.info("Tracker store: Redis at %s", redact_url(settings.redis_url))
            return CurrentSessionRedisTrackerStore(
                domain=domain,
                event_broker=event_broker,
                key_prefix=kwargs.get("key_prefix", "rapport"),
                **redis_kwargs(settings.redis_url),
            )
        url = settings.tracker_database_url
        logger.info("Tracker store: SQL at %s", redact_url(url))
        return SQLTrackerStore(domain=domain, event_broker=event_broker, **sql_tracker_kwargs(url))


class EnvLockStore(LockStore):
    """Redis when ``REDIS_URL`` is set (needed with more than one Rasa instance), else in memory."""

    def __new__(cls, endpoint_config: Any = None) -> LockStore:
        settings = bot_settings.current()
        if settings.redis_url:
            logger.info("Lock store: Redis at %s", redact_url(settings.redis_url))
            kwargs = redis_kwargs(settings.redis_url)
            # Locks live in their own Redis database by default, apart from trackers.
            kwargs.setdefault("db", 1)
            return RedisLockStore(key_prefix="rapport", **kwargs)
        logger.info("Lock store: in memory (single Rasa instance)")
        return InMemoryLockStore()


def fail_closed(store: TrackerStore | None, domain: Domain) -> TrackerStore:
    """The tracker store the agent uses: the configured one itself, not Rasa's
    ``FailSafeTrackerStore`` around it.

    That wrapper answers a failed read with "no conversation yet" and a failed write by
    keeping the tracker in memory, so a Redis hiccup silently starts a new conversation
    and splits the customer's history. Unwrapped, the failure reaches the channel, which
    asks the customer to send the message again (``connectors.inbound``).
    """
    if store is None:
        return InMemoryTrackerStore(domain)
    store.domain = domain
    return store


def install_fail_closed_tracker_store() -> None:
    """Make Rasa's agent build its tracker store with :func:`fail_closed` (called once by
    ``bot.rasa_server`` before the agent loads; Rasa has no setting for it)."""
    from rasa.core.agent import Agent

    Agent._create_tracker_store = staticmethod(fail_closed)
