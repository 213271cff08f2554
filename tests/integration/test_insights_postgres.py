"""The Insights suite again, on PostgreSQL (day boundaries, interval arithmetic)."""

from __future__ import annotations

import pytest

from tests.unit.test_insights import *  # noqa: F403  (re-run every insights test)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions in UTC+14, so a day taken in the session's time zone would show."""
    monkeypatch.setenv("PGTZ", "Pacific/Kiritimati")


@pytest.fixture
def insights_url(postgres_crm_url: str) -> str:  # overrides the SQLite fixture of the suite
    return postgres_crm_url
