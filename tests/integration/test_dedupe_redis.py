"""With Redis, a delivery is claimed once across every Rasa instance."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from connectors.dedupe import Deduplicator

pytestmark = pytest.mark.integration


async def test_two_instances_racing_for_one_update() -> None:
    namespace = f"rapport:test:{uuid.uuid4().hex[:8]}"
    first, second = (Deduplicator("redis://127.0.0.1:6379/9", namespace) for _ in range(2))
    results = await asyncio.gather(*(d.first_time("update-1") for d in (first, second) * 5))
    assert sorted(results) == [False] * 9 + [True]
    assert await first.first_time("update-2") is True
