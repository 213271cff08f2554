"""Shared fixtures: real CRM databases (SQLite per test; PostgreSQL for integration)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def prepare_crm(url: str) -> str:
    """Migrate and seed the CRM at ``url``."""
    from crm_bridge.migrate import upgrade
    from crm_bridge.seed import seed

    upgrade(url)
    seed(url)
    return url


@pytest.fixture(autouse=True)
def fresh_process_settings() -> Iterator[None]:
    """Each test builds the process-wide settings from its own environment."""
    from bot import settings as bot_settings

    bot_settings.current.cache_clear()
    yield
    bot_settings.current.cache_clear()


@pytest.fixture
def crm_url(tmp_path: Path) -> str:
    """A fresh, migrated and seeded SQLite CRM."""
    return prepare_crm(f"sqlite:///{tmp_path / 'crm.db'}")


@pytest.fixture
def crm_gateway(crm_url: str):
    """The SQL gateway on the seeded SQLite CRM."""
    from crm_bridge.sql_gateway import SqlCrmGateway

    return SqlCrmGateway.from_url(crm_url)


@contextmanager
def postgres_crm() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1, migrated and seeded; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from crm_bridge.db import get_engine

    name = f"rapport_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield prepare_crm(url)
    finally:
        get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_crm_url() -> Iterator[str]:
    """A fresh PostgreSQL CRM for one test."""
    with postgres_crm() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def any_crm_url(request: pytest.FixtureRequest) -> str:
    """The seeded CRM on each backend the project supports."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("crm_url"))
    return str(request.getfixturevalue("postgres_crm_url"))
