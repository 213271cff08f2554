"""The handoff suite on PostgreSQL (row-level concurrency for simultaneous claims)."""

from __future__ import annotations

import pytest

from tests.unit.test_crm_handoff import *  # noqa: F403

pytestmark = pytest.mark.integration


@pytest.fixture
def desk_url(postgres_crm_url: str) -> str:  # overrides the SQLite fixture of the suite
    return postgres_crm_url
