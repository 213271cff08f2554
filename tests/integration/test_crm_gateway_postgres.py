"""The gateway suite again, on PostgreSQL, plus the migration-vs-models check on both."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm_bridge.db import get_engine
from crm_bridge.models import Base
from tests.unit.test_crm_gateway import *  # noqa: F403  (re-run every gateway test)

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_url(postgres_crm_url: str) -> str:  # overrides the SQLite fixture of the suite
    return postgres_crm_url


@pytest.mark.parametrize("backend", ["crm_url", "postgres_crm_url"])
def test_migrations_match_the_models(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(backend)
    with get_engine(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
