"""Merging two contacts that turn out to be one customer, and undoing such a merge.

A merge is an operator's explicit act (``python -m crm_bridge merge``), recorded in
``contact_merges`` with who, when and why, and with the ids of exactly the rows that
moved, table by table. Un-merging moves those rows back (the ones still on the target)
and nothing else: what was created on the target after the merge stays there.

The source contact is not deleted. It stays as its own row with ``merged_into_id`` set,
keeping its name, email and phone: ``contacts.email`` is unique, so both addresses cannot
live on one row, and un-merging needs the source as it was. The target's details win;
nothing is copied onto it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.erasure import ERASED_NAME, find_contact
from crm_bridge.errors import Conflict, ContactNotFound, InvalidInput, NotFound
from crm_bridge.identity_links import current_owner

logger = logging.getLogger(__name__)

# The rows that are the customer's and follow them to the target: their channels and
# conversations (what the CRM must show together), their orders, tickets and returns,
# their consent decisions (the person's own words, and an opt-out must keep applying to
# the channels that move), and their notifications (the "sent once per recipient" check
# looks them up by contact, so a message already sent is not sent again after a merge).
MOVED_TABLES: tuple[tuple[str, Any], ...] = (
    ("channel_identities", models.ChannelIdentity),
    ("interactions", models.Interaction),
    ("orders", models.Order),
    ("tickets", models.Ticket),
    ("return_requests", models.ReturnRequest),
    ("consents", models.Consent),
    ("notifications", models.Notification),
)
# Tables with a contact_id that deliberately stay with the source. One-time codes, link
# tokens and export links are evidence that someone held the *source's* address or link,
# or asked for the source's data: moving a pending one would let it prove (or export) the
# target, and an identity linked through it during a merge later undone would keep the
# target's data (it was created after the merge, so it stays). Their rate limits and
# locks are per channel identity, not per contact, so nothing is weakened by leaving
# them. Handoffs have no contact column: they follow their interaction. The erasure
# collects merged contacts, so these rows are still erased with the customer. Outbox
# events describe the source's own remote record and are delivered as they were recorded.
KEPT_TABLES: tuple[str, ...] = ("one_time_codes", "link_tokens", "export_tokens", "outbox_events")

MAX_ACTOR_CHARS = 100
MAX_REASON_CHARS = 2000
# Bound on the ids in one IN (...): old SQLite builds allow 999 parameters per statement.
CHUNK = 500


@dataclass(frozen=True)
class MergeView:
    """One merge as recorded. ``moved`` maps each table to the ids that moved to the
    target; ``moved_back`` is only filled in :func:`unmerge`'s answer (the recorded rows
    that were still on the target and went back)."""

    id: int
    source_contact_id: int
    target_contact_id: int
    actor: str
    reason: str
    moved: Mapping[str, tuple[int, ...]]
    merged_at: datetime
    undone_at: datetime | None = None
    undone_by: str | None = None
    undo_reason: str | None = None
    moved_back: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def active(self) -> bool:
        """Is the merge in force (not undone)?"""
        return self.undone_at is None

    def counts(self) -> dict[str, int]:
        """How many rows of each table moved to the target."""
        return {table: len(ids) for table, ids in self.moved.items()}


def merge_contacts(
    factory: sessionmaker,
    source_id: int | str,
    target_id: int | str,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> MergeView:
    """Merge the source contact into the target (each an id or an email), in one
    transaction: the source's rows move to the target and the move is recorded.

    Refuses (InvalidInput) an empty reason or actor and a contact merged into itself;
    (Conflict) a source already merged, a target that is itself merged, an erased
    contact; (ContactNotFound) an unknown contact.
    """
    actor = _required("actor", actor, MAX_ACTOR_CHARS, "Say who merges the contacts.")
    reason = _required("reason", reason, MAX_REASON_CHARS, "Say why the contacts are merged.")
    when = now or models.utcnow()
    with unit_of_work(factory) as session:
        source = _resolve(session, source_id, "source")
        target = _resolve(session, target_id, "target")
        if source.id == target.id:
            raise InvalidInput("target", "A contact cannot be merged into itself.")
        source, target = _lock(session, source.id, target.id)
        _check_mergeable(session, source, target)
        moved: dict[str, list[int]] = {}
        for table, model in MOVED_TABLES:
            ids = sorted(
                session.execute(select(model.id).where(model.contact_id == source.id)).scalars()
            )
            _move(session, model, ids, source.id, target.id)
            moved[table] = ids
        source.merged_into_id = target.id
        record = models.ContactMerge(
            source_contact_id=source.id,
            target_contact_id=target.id,
            actor=actor,
            reason=reason,
            moved=moved,
            merged_at=when,
        )
        session.add(record)
        session.flush()
        view = _view(record)
    logger.info(
        "merged contact %s into contact %s (merge #%s, by %s)",
        view.source_contact_id,
        view.target_contact_id,
        view.id,
        view.actor,
    )
    return view


def unmerge(
    factory: sessionmaker,
    merge_id: int,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> MergeView:
    """Undo a merge in one transaction: the recorded rows still on the target go back to
    the source, the source is no longer merged, and who, when and why is recorded.

    Refuses (NotFound) an unknown merge; (Conflict) a merge already undone, and one whose
    target was merged into another contact since (undo that later merge first: the
    rows are on that contact now, and that merge's record is what can bring them back).
    """
    actor = _required("actor", actor, MAX_ACTOR_CHARS, "Say who undoes the merge.")
    reason = _required("reason", reason, MAX_REASON_CHARS, "Say why the merge is undone.")
    when = now or models.utcnow()
    with unit_of_work(factory) as session:
        record = session.get(models.ContactMerge, merge_id, with_for_update=True)
        if record is None:
            raise NotFound(f"No merge #{merge_id}.")
        if record.undone_at is not None:
            raise Conflict(f"Merge #{merge_id} was already undone ({_when(record.undone_at)}).")
        source, target = _lock(session, record.source_contact_id, record.target_contact_id)
        later = _live_merge_of(session, target.id)
        if later is not None:
            raise Conflict(
                f"Contact #{target.id} was merged into contact #{later.target_contact_id} "
                f"since (merge #{later.id}); undo merge #{later.id} first."
            )
        if source.merged_into_id != target.id:  # only a hand edit of the table gets here
            raise Conflict(f"Contact #{source.id} is not merged into contact #{target.id}.")
        moved_back: dict[str, tuple[int, ...]] = {}
        for table, model in MOVED_TABLES:
            recorded = [int(i) for i in (record.moved or {}).get(table, [])]
            # Only the rows still on the target: one re-linked elsewhere since (or erased)
            # is not taken back from its new owner.
            still = sorted(
                row_id
                for chunk in _chunks(recorded)
                for row_id in session.execute(
                    select(model.id).where(model.id.in_(chunk), model.contact_id == target.id)
                ).scalars()
            )
            _move(session, model, still, target.id, source.id)
            moved_back[table] = tuple(still)
        source.merged_into_id = None
        record.undone_at = when
        record.undone_by = actor
        record.undo_reason = reason
        session.flush()
        view = _view(record, moved_back)
    logger.info("undid merge #%s (by %s)", view.id, actor)
    return view


def list_merges(factory: sessionmaker, contact_id: int | str | None = None) -> list[MergeView]:
    """Every merge, newest first; with ``contact_id`` (an id or an email), only the
    merges that contact took part in, as source or target."""
    with unit_of_work(factory) as session:
        if contact_id is None:
            rows = session.execute(
                select(models.ContactMerge).order_by(models.ContactMerge.id.desc())
            ).scalars()
            return [_view(row) for row in rows]
        return merges_of(session, _resolve(session, contact_id, "contact").id)


def merges_of(session: Session, contact_id: int) -> list[MergeView]:
    """The merges a contact took part in (as source or target), newest first, inside
    the caller's unit of work."""
    rows = session.execute(
        select(models.ContactMerge)
        .where(
            (models.ContactMerge.source_contact_id == contact_id)
            | (models.ContactMerge.target_contact_id == contact_id)
        )
        .order_by(models.ContactMerge.id.desc())
    ).scalars()
    return [_view(row) for row in rows]


def _required(field_name: str, value: str, limit: int, message: str) -> str:
    cleaned = (value or "").strip()
    if not cleaned:
        raise InvalidInput(field_name, message)
    if len(cleaned) > limit:
        raise InvalidInput(field_name, f"The {field_name} is longer than {limit} characters.")
    return cleaned


def _resolve(session: Session, ref: int | str, role: str) -> models.Contact:
    # The erasure's resolver (id or email); the error says which of the two is unknown
    # without repeating an address the operator typed.
    try:
        return find_contact(session, ref)
    except ContactNotFound:
        raise ContactNotFound(f"No contact matches the {role}.") from None


def _lock(session: Session, *contact_ids: int) -> tuple[models.Contact, models.Contact]:
    """The two contacts, re-read under a row lock, in id order so that two operators
    merging the same pair in opposite directions cannot deadlock. FOR UPDATE (not FOR NO
    KEY UPDATE) on purpose: it also holds off inserts that reference these contacts
    (PostgreSQL takes FOR KEY SHARE for a foreign key), so no row lands on the source
    between listing its rows and moving them. SQLite ignores it: one writer at a time."""
    rows = session.execute(
        select(models.Contact)
        .where(models.Contact.id.in_(sorted(contact_ids)))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalars()
    by_id = {row.id: row for row in rows}
    first, second = contact_ids
    return by_id[first], by_id[second]


def _check_mergeable(session: Session, source: models.Contact, target: models.Contact) -> None:
    if source.merged_into_id is not None:
        earlier = _live_merge_of(session, source.id)
        via = f" (merge #{earlier.id})" if earlier is not None else ""
        raise Conflict(
            f"Contact #{source.id} is already merged into contact #{source.merged_into_id}"
            f"{via}; undo that merge first."
        )
    if target.merged_into_id is not None:
        owner = current_owner(session, target.id)
        raise Conflict(
            f"Contact #{target.id} is itself merged into contact #{target.merged_into_id}; "
            f"merge into contact #{owner} instead."
        )
    for contact in (source, target):
        if contact.name == ERASED_NAME and contact.email is None and contact.phone is None:
            raise Conflict(f"Contact #{contact.id} was erased; it cannot take part in a merge.")


def _live_merge_of(session: Session, source_id: int) -> models.ContactMerge | None:
    """The merge in force that has ``source_id`` as its source, if any."""
    return (
        session.execute(
            select(models.ContactMerge)
            .where(
                models.ContactMerge.source_contact_id == source_id,
                models.ContactMerge.undone_at.is_(None),
            )
            .order_by(models.ContactMerge.id.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _move(session: Session, model: Any, ids: Sequence[int], from_id: int, to_id: int) -> None:
    # Conditional on the current owner as well as the id: a row that changed hands in
    # the meantime is not taken from its new owner.
    for chunk in _chunks(ids):
        session.execute(
            update(model)
            .where(model.id.in_(chunk), model.contact_id == from_id)
            .values(contact_id=to_id)
            .execution_options(synchronize_session=False)
        )


def _view(
    record: models.ContactMerge, moved_back: Mapping[str, tuple[int, ...]] | None = None
) -> MergeView:
    moved = {table: tuple(int(i) for i in ids) for table, ids in (record.moved or {}).items()}
    return MergeView(
        id=record.id,
        source_contact_id=record.source_contact_id,
        target_contact_id=record.target_contact_id,
        actor=record.actor,
        reason=record.reason,
        moved=MappingProxyType(moved),
        merged_at=record.merged_at,
        undone_at=record.undone_at,
        undone_by=record.undone_by,
        undo_reason=record.undo_reason,
        moved_back=MappingProxyType(dict(moved_back or {})),
    )


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")
