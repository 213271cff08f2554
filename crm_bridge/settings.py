"""The CRM bridge's own settings, read from the environment.

Kept apart from ``bot.settings`` because ``crm_bridge`` must work without the bot
(for the consumer, the CLI and other agent consoles).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    """Where embedded data lives (``var/`` in the project unless RAPPORT_VAR_DIR says otherwise)."""
    return Path(os.environ.get("RAPPORT_VAR_DIR", PROJECT_ROOT / "var"))


def database_url() -> str:
    """The CRM's SQLAlchemy URL: CRM_DATABASE_URL, else SQLite at var/crm.db."""
    url = os.environ.get("CRM_DATABASE_URL", "").strip()
    if url:
        return url
    folder = var_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'crm.db'}"


def rabbitmq_url() -> str:
    """RABBITMQ_URL, or an empty string when the embedded (in-process) log is used."""
    return os.environ.get("RABBITMQ_URL", "").strip()


def events_queue() -> str:
    """The durable queue Rasa publishes conversation events to."""
    return os.environ.get("RAPPORT_EVENTS_QUEUE", "rapport_events").strip()


def events_exchange() -> str:
    """The fanout exchange Rasa's PikaEventBroker binds its queues to."""
    return os.environ.get("RAPPORT_EVENTS_EXCHANGE", "rasa-exchange").strip()


def session_timeout_minutes() -> int:
    """Inactivity after which an open Interaction counts as ended."""
    raw = os.environ.get("SESSION_TIMEOUT_MINUTES", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 60


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to log or print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
