"""Settings, URL redaction and store selection from the environment."""

from __future__ import annotations

import pytest
from rasa.core.lock_store import InMemoryLockStore
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain

from bot import settings as bot_settings
from bot.stores import EnvLockStore, EnvTrackerStore, redis_kwargs, sql_tracker_kwargs
from crm_bridge.settings import redact_url


def test_api_without_authentication_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASA_ENABLE_API", "true")
    monkeypatch.delenv("RASA_API_TOKEN", raising=False)
    monkeypatch.delenv("RASA_JWT_SECRET", raising=False)
    with pytest.raises(bot_settings.SettingsError, match="RASA_API_TOKEN"):
        bot_settings.load().validate()


def test_api_with_token_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASA_ENABLE_API", "yes")
    monkeypatch.setenv("RASA_API_TOKEN", "s3cret")
    settings = bot_settings.load()
    settings.validate()
    assert settings.api_enabled and settings.api_token == "s3cret"


def test_api_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RASA_ENABLE_API", raising=False)
    assert bot_settings.load().api_enabled is False


def test_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASA_PORT", "fifty")
    with pytest.raises(bot_settings.SettingsError, match="RASA_PORT"):
        bot_settings.load()


def test_redact_url_hides_only_the_password() -> None:
    assert (
        redact_url("amqp://guest:hunter2@127.0.0.1:5672/vh") == "amqp://guest:***@127.0.0.1:5672/vh"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redis_url_is_split_into_store_arguments() -> None:
    kwargs = redis_kwargs("rediss://:p%40ss@cache.internal:6380/3")
    assert kwargs["host"] == "cache.internal"
    assert kwargs["port"] == 6380
    assert kwargs["db"] == 3
    assert kwargs["password"] == "p@ss"
    assert kwargs["use_ssl"] is True


def test_non_redis_url_is_rejected() -> None:
    with pytest.raises(bot_settings.SettingsError, match="REDIS_URL"):
        redis_kwargs("http://127.0.0.1:6379")


def test_sql_tracker_arguments_from_postgres_url() -> None:
    kwargs = sql_tracker_kwargs("postgresql://rasa:pw@db.local:5433/trackers")
    assert kwargs == {
        "dialect": "postgresql",
        "host": "db.local",
        "port": 5433,
        "db": "trackers",
        "username": "rasa",
        "password": "pw",
    }


def test_embedded_defaults_select_sql_tracker_and_memory_locks(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("TRACKER_DATABASE_URL", f"sqlite:///{tmp_path / 'sub' / 'tracker.db'}")
    store = EnvTrackerStore(domain=Domain.empty())
    assert isinstance(store, SQLTrackerStore)
    assert (tmp_path / "sub" / "tracker.db").exists()
    assert isinstance(EnvLockStore(), InMemoryLockStore)
