"""``bench.tracker_history`` with tiny counts against the real Redis, so it cannot rot
(its figures are checked for sense, not against a goal)."""

from __future__ import annotations

import pytest

from bench.tracker_history import history, run

pytestmark = pytest.mark.integration


def test_the_history_has_the_earlier_turns_and_a_current_session() -> None:
    users = [event for event in history(150) if event.type_name == "user"]
    assert len(users) == 150 + 5


async def test_every_store_is_timed_for_every_history_length() -> None:
    results = await run([0, 20], repeat=1, redis_host="127.0.0.1", redis_port=6379)
    assert len(results) == 3
    for row in results.values():
        assert set(row) == {"0", "20"} and all(ms > 0 for ms in row.values())
