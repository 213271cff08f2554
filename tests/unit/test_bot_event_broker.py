"""The embedded event broker writes the interaction log off the event loop, and keeps
events through a CRM outage until they can be written."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.event_broker import InteractionLogBroker
from crm_bridge import models
from crm_bridge.db import session_factory
from tests.conftest import prepare_crm
from tests.unit.test_interaction_log import conversation


def transcript(url: str) -> list[str]:
    with session_factory(url)() as session:
        rows = session.execute(select(models.InteractionMessage.text).order_by("event_ts"))
        return list(rows.scalars())


async def test_published_events_become_the_transcript(crm_url: str) -> None:
    broker = InteractionLogBroker(crm_url)
    for event in conversation("demo-alice", 1_700_000_000.0):
        broker.publish(event)
    assert broker.flush(timeout=10)
    assert transcript(crm_url) == ["hi", "Hello! How can I help?", "thanks 🙏", "You're welcome!"]
    await broker.close()


async def test_events_wait_out_a_crm_outage(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.event_broker.RETRY_DELAY_SECONDS", 0.05)
    url = f"sqlite:///{tmp_path / 'later' / 'crm.db'}"
    broker = InteractionLogBroker(url)
    # No schema yet: every write fails, and the events must stay queued.
    for event in conversation("web-1", 1_700_000_000.0):
        broker.publish(event)
    assert broker.flush(timeout=0.5) is False
    prepare_crm(url)  # the CRM comes back
    assert broker.flush(timeout=10)
    assert len(transcript(url)) == 4
    await broker.close()
