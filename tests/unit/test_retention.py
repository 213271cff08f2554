"""Retention purge on SQLite: old transcripts, old Rasa tracker events (written by Rasa's
own SQLTrackerStore) and spent codes and tokens go; recent ones stay; a second run
removes nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from crm_bridge import cli, models
from crm_bridge.db import session_factory
from crm_bridge.link_tokens import LinkTokens
from crm_bridge.mailer import OutboxMailer
from crm_bridge.one_time_codes import OneTimeCodes
from crm_bridge.retention import newest_event_time, purge
from tests.privacy_scan import scan_sql
from tests.unit.test_erasure import SECRET, Customer, seed_customer

NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=400)


def save_tracker(store: SQLTrackerStore, customer: Customer) -> None:
    """The customer's conversation in Rasa's tracker store, at its own time."""
    t0 = customer.started_at
    events = [
        SessionStarted(timestamp=t0),
        UserUttered(f"hi, {customer.words}", {"name": "greet", "confidence": 1.0}, timestamp=t0),
    ]
    tracker = DialogueStateTracker.from_events(customer.rest_sender, events)
    asyncio.run(store.save(tracker))


@pytest.fixture
def stores(crm_url: str, tmp_path: Path) -> tuple[str, Customer, Customer]:
    """A tracker database, and an old and a recent customer in it and in the CRM."""
    tracker_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = SQLTrackerStore(dialect="sqlite", db=str(tmp_path / "tracker.db"))
    old = seed_customer(crm_url, tmp_path, started_at=OLD.timestamp())
    recent = seed_customer(crm_url, tmp_path)
    for customer in (old, recent):
        save_tracker(store, customer)
    factory = session_factory(crm_url)
    OneTimeCodes(factory, OutboxMailer(tmp_path), SECRET, now=lambda: OLD).send(
        old.contact_id, "rest", old.rest_sender
    )
    LinkTokens(factory, SECRET, now=lambda: OLD).issue(old.contact_id)
    return tracker_url, old, recent


def transcript_findings(url: str, needles: list[str]) -> list[str]:
    return [f for f in scan_sql(url, needles) if f.startswith("interaction_messages.")]


def test_old_transcripts_and_events_go_recent_ones_stay(crm_url: str, stores) -> None:
    tracker_url, old, recent = stores
    report = purge(session_factory(crm_url), 365, tracker_url=tracker_url)

    assert transcript_findings(crm_url, [old.words, old.email]) == []
    assert transcript_findings(crm_url, [recent.words])
    assert scan_sql(tracker_url, [old.rest_sender, old.words]) == []
    assert scan_sql(tracker_url, [recent.rest_sender, recent.words])
    removed = {r.store: dict(r.removed) for r in report.stores}
    assert removed["crm"] == {
        "inbox reviews": 0,
        "transcript lines": 3,
        "one-time codes": 1,
        "link tokens": 1,
        "export links": 0,
        "outbox events": 0,
    }
    assert removed["tracker (sql)"]["events"] >= 2
    assert [r.line() for r in report.stores][2] == "redis: not configured"
    with session_factory(crm_url)() as session:  # the timeline keeps the Interaction
        assert session.query(models.Interaction).count() == 2

    again = purge(session_factory(crm_url), 365, tracker_url=tracker_url)
    assert all(count == 0 for r in again.stores for count in r.removed.values())


def test_a_dry_run_counts_and_keeps(crm_url: str, stores) -> None:
    tracker_url, old, _ = stores
    report = purge(session_factory(crm_url), 365, tracker_url=tracker_url, dry_run=True)
    assert report.stores[0].removed["transcript lines"] == 3
    assert report.lines()[0].startswith("Would purge what is older than 365 days")
    assert transcript_findings(crm_url, [old.words])
    assert scan_sql(tracker_url, [old.words])


def test_zero_days_keeps_everything(crm_url: str, stores) -> None:
    tracker_url, old, _ = stores
    report = purge(session_factory(crm_url), 0, tracker_url=tracker_url)
    assert report.lines() == ["Retention is off (TRANSCRIPT_RETENTION_DAYS=0): nothing purged."]
    assert transcript_findings(crm_url, [old.words])


def test_cli_purge_reads_the_setting(crm_url, stores, monkeypatch, capsys) -> None:
    tracker_url, old, recent = stores
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("TRACKER_DATABASE_URL", tracker_url)
    monkeypatch.setenv("TRANSCRIPT_RETENTION_DAYS", "500")
    assert cli.main(["--database-url", crm_url, "purge"]) == 0
    assert transcript_findings(crm_url, [old.words])  # 400 days < 500
    assert cli.main(["--database-url", crm_url, "purge", "--days", "300"]) == 0
    out = capsys.readouterr().out
    assert "crm: inbox reviews 0, transcript lines 3" in out
    assert transcript_findings(crm_url, [old.words]) == []
    assert transcript_findings(crm_url, [recent.words])


def test_newest_event_time_of_a_redis_tracker() -> None:
    assert newest_event_time('{"events": [{"timestamp": 5}, {"timestamp": 9.5}]}') == 9.5
    assert newest_event_time("not json") is None
    assert newest_event_time('{"events": []}') is None
