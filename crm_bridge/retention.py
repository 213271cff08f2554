"""Retention: purge conversation text older than ``TRANSCRIPT_RETENTION_DAYS``.

``python -m crm_bridge purge`` (safe to schedule, e.g. daily; running it twice removes
nothing the second time) deletes:

- CRM: the transcript lines (``interaction_messages``) of Interactions that ended more
  than N days ago, with the workbench reviews of those lines. The Interaction rows stay
  on the timeline (channel, dates, outcome, intents) without the customer's words;
- Rasa's SQL tracker store: events older than N days (``events.timestamp``); Rasa reads
  only the latest conversation session, and a session older than N days has long
  expired (``session_expiration_time``), so no live conversation loses its state;
- Rasa's Redis tracker store: whole trackers whose newest event is older than N days (a
  Redis tracker is one value, so it goes as a whole or stays);
- CRM: one-time codes and link tokens created more than N days ago that are used or
  expired (they prove nothing any more).

Tickets and returns are business records and stay until the contact is erased. With
N = 0 nothing is purged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.conversation_stores import (
    TRACKER_EVENTS,
    TRACKER_KEY,
    StoreReport,
    redis_client,
    redis_error,
    rowcount,
    tracker_engine,
)
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Unavailable

FAILED = "failed"


@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed (or, with ``dry_run``, would remove), one report per store."""

    days: int
    cutoff: datetime | None
    dry_run: bool
    stores: tuple[StoreReport, ...]

    @property
    def failed(self) -> list[str]:
        """The stores that could not be purged this time."""
        return [report.store for report in self.stores if report.note.startswith(FAILED)]

    def lines(self) -> list[str]:
        """The report as printed: a heading, then one line per store."""
        if self.cutoff is None:
            return ["Retention is off (TRANSCRIPT_RETENTION_DAYS=0): nothing purged."]
        verb = "Would purge" if self.dry_run else "Purged"
        when = self.cutoff.strftime("%Y-%m-%d %H:%M:%S UTC")
        head = f"{verb} what is older than {self.days} days (before {when}):"
        return [head, *(f"  {report.line()}" for report in self.stores)]


def purge_crm(session: Session, cutoff: datetime, now: datetime, dry_run: bool) -> StoreReport:
    """Transcript lines, their reviews, and spent codes and tokens older than ``cutoff``."""
    ended = func.coalesce(models.Interaction.ended_at, models.Interaction.started_at)
    old_interactions = select(models.Interaction.id).where(ended < cutoff)
    old_lines = select(models.InteractionMessage.id).where(
        models.InteractionMessage.interaction_id.in_(old_interactions)
    )
    targets = {
        "inbox reviews": (
            models.InboxReview,
            models.InboxReview.message_id.in_(old_lines),
        ),
        "transcript lines": (
            models.InteractionMessage,
            models.InteractionMessage.interaction_id.in_(old_interactions),
        ),
        "one-time codes": (
            models.OneTimeCode,
            (models.OneTimeCode.created_at < cutoff)
            & or_(models.OneTimeCode.used_at.is_not(None), models.OneTimeCode.expires_at < now),
        ),
        "link tokens": (
            models.LinkToken,
            (models.LinkToken.created_at < cutoff)
            & or_(models.LinkToken.used_at.is_not(None), models.LinkToken.expires_at < now),
        ),
        "export links": (
            models.ExportToken,
            (models.ExportToken.created_at < cutoff)
            & or_(models.ExportToken.used_at.is_not(None), models.ExportToken.expires_at < now),
        ),
        # Delivered or dropped events keep no payload, only their bookkeeping.
        "outbox events": (
            models.OutboxEvent,
            (models.OutboxEvent.created_at < cutoff)
            & models.OutboxEvent.status.in_(("delivered", "dropped")),
        ),
    }
    done: dict[str, int] = {}
    for label, (model, condition) in targets.items():
        if dry_run:
            query = select(func.count()).select_from(model).where(condition)
            done[label] = int(session.execute(query).scalar_one())
        else:
            statement = delete(model).where(condition)
            # Bulk: the rows are not loaded in this session, nothing to synchronise.
            statement = statement.execution_options(synchronize_session=False)
            done[label] = rowcount(session.execute(statement))
    return StoreReport("crm", done)


def purge_sql_tracker(url: str, cutoff: datetime, dry_run: bool) -> StoreReport:
    """Rasa tracker events older than ``cutoff`` in the SQL tracker store."""
    name = "tracker (sql)"
    if not url:
        return StoreReport(name, note="not configured")
    engine = tracker_engine(url)
    if engine is None:
        return StoreReport(name, note="no events table")
    old = TRACKER_EVENTS.c.timestamp < cutoff.timestamp()
    with engine.begin() as connection:
        if dry_run:
            query = select(func.count()).select_from(TRACKER_EVENTS).where(old)
            count = int(connection.execute(query).scalar_one())
        else:
            count = rowcount(connection.execute(delete(TRACKER_EVENTS).where(old)))
    return StoreReport(name, {"events": count})


def newest_event_time(raw: bytes | str | None) -> float | None:
    """The newest event timestamp of a tracker as RedisTrackerStore stores it
    (``json.dumps(tracker.as_dialogue().as_dict())``: ``{"events": [...]}``)."""
    try:
        dialogue = json.loads(raw or "")
        stamps = [float(e["timestamp"]) for e in dialogue.get("events") or [] if "timestamp" in e]
    except (ValueError, TypeError, AttributeError, KeyError):
        return None  # not a tracker we understand: left alone
    return max(stamps) if stamps else None


def purge_redis_trackers(url: str, cutoff: datetime, dry_run: bool) -> StoreReport:
    """Redis trackers whose newest event is older than ``cutoff``."""
    name = "redis"
    if not url:
        return StoreReport(name, note="not configured")
    RedisError = redis_error()
    limit = cutoff.timestamp()
    count = 0
    try:
        client = redis_client(url)
        for key in client.scan_iter(match=TRACKER_KEY.format(sender="*"), count=500):
            newest = newest_event_time(client.get(key))
            if newest is not None and newest < limit:
                count += 1 if dry_run else int(client.delete(key))
    except (RedisError, OSError) as error:
        raise Unavailable(f"Redis did not answer ({type(error).__name__})") from error
    return StoreReport(name, {"trackers": count})


def purge(
    factory: sessionmaker,
    days: int,
    tracker_url: str = "",
    redis_url: str = "",
    now: datetime | None = None,
    dry_run: bool = False,
) -> PurgeReport:
    """Purge everything retention covers that is older than ``days`` (0: nothing).

    The CRM is one unit of work; each conversation store is purged on its own, so a
    store that is down leaves the others purged (run again later: it is idempotent).
    """
    if days < 0:
        raise ValueError("days must be 0 or more")
    if days == 0:
        return PurgeReport(days, None, dry_run, ())
    now = now or models.utcnow()
    cutoff = now - timedelta(days=days)
    with unit_of_work(factory) as session:
        crm = purge_crm(session, cutoff, now, dry_run)
    reports = [crm]
    for name, step, url in (
        ("tracker (sql)", purge_sql_tracker, tracker_url),
        ("redis", purge_redis_trackers, redis_url),
    ):
        try:
            reports.append(step(url, cutoff, dry_run))
        except (Unavailable, SQLAlchemyError) as error:
            # Said in the report (and the exit code); the next run finishes the job.
            reports.append(StoreReport(name, note=f"{FAILED}: {type(error).__name__}"))
    return PurgeReport(days, cutoff, dry_run, tuple(reports))
