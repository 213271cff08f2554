"""Contact merges (SQLite): explicit, recorded, and reversible to the exact row.

Two customers are seeded through the real writers (identities, a conversation, an order,
a ticket, a return, a handoff, codes, link tokens, a consent, a notification: see
``tests.unit.test_erasure.seed_customer``); a snapshot of every ``contact_id`` column is
compared before a merge and after its un-merge.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.cli import main
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, ContactNotFound, InvalidInput, NotFound
from crm_bridge.identity_links import EMAIL_CODE, link
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.merging import (
    KEPT_TABLES,
    MOVED_TABLES,
    current_owner,
    list_merges,
    merge_contacts,
    unmerge,
)
from tests.unit.test_erasure import Customer, seed_customer, session_start, user

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
Snapshot = dict[str, list[tuple[int, int | None]]]


def snapshot(url: str) -> Snapshot:
    """Every table's (row id, contact id) pairs, and each contact's ``merged_into_id``."""
    shot: Snapshot = {}
    with unit_of_work(session_factory(url)) as session:
        for table in models.Base.metadata.sorted_tables:
            if "contact_id" in table.c:
                rows = session.execute(select(table.c.id, table.c.contact_id).order_by(table.c.id))
                shot[table.name] = [(row[0], row[1]) for row in rows]
        merged = session.execute(
            select(models.Contact.id, models.Contact.merged_into_id).order_by(models.Contact.id)
        )
        shot["contacts.merged_into_id"] = [(row[0], row[1]) for row in merged]
    return shot


def owned(url: str, contact_id: int) -> dict[str, set[int]]:
    """The ids of each table's rows that belong to the contact."""
    return {
        table: {row_id for row_id, owner in rows if owner == contact_id}
        for table, rows in snapshot(url).items()
        if table != "contacts.merged_into_id"
    }


def two_customers(url: str, tmp_path: Path) -> tuple[Customer, Customer]:
    source = seed_customer(url, tmp_path, order_number="20001")
    target = seed_customer(url, tmp_path, started_at=source.started_at + 60, order_number="20002")
    return source, target


def merge(url: str, source: int | str, target: int | str, reason: str = "same person"):
    return merge_contacts(session_factory(url), source, target, "tess", reason, now=NOW)


def undo(url: str, merge_id: int, reason: str = "not the same person"):
    return unmerge(session_factory(url), merge_id, "tess", reason, now=NOW + timedelta(hours=1))


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_table_with_a_contact_is_moved_or_deliberately_kept() -> None:
    with_contact = {
        table.name for table in models.Base.metadata.sorted_tables if "contact_id" in table.c
    }
    moved = {name for name, _ in MOVED_TABLES}
    assert moved | set(KEPT_TABLES) == with_contact
    assert not moved & set(KEPT_TABLES)


def test_merge_brings_both_customers_together_and_unmerge_restores_every_row(
    crm_url: str, tmp_path: Path
) -> None:
    source, target = two_customers(crm_url, tmp_path)
    before = snapshot(crm_url)
    source_rows, target_rows = owned(crm_url, source.contact_id), owned(crm_url, target.contact_id)

    view = merge(crm_url, source.email, str(target.contact_id))

    assert view.source_contact_id == source.contact_id
    assert view.target_contact_id == target.contact_id
    assert (view.actor, view.reason, view.merged_at) == ("tess", "same person", NOW)
    assert view.active and view.undone_at is None
    # Exactly the source's rows moved, table by table; codes and link tokens stayed.
    assert {t: set(ids) for t, ids in view.moved.items()} == {
        t: ids for t, ids in source_rows.items() if t not in KEPT_TABLES
    }
    assert view.counts()["channel_identities"] == 2 and view.counts()["orders"] == 1
    now_target = owned(crm_url, target.contact_id)
    for table, _ in MOVED_TABLES:
        assert now_target[table] == source_rows[table] | target_rows[table]
    for table in KEPT_TABLES:
        assert owned(crm_url, source.contact_id)[table] == source_rows[table]
    with unit_of_work(session_factory(crm_url)) as session:
        merged = session.get(models.Contact, source.contact_id)
        assert merged.merged_into_id == target.contact_id
        assert merged.email == source.email  # the source keeps its (unique) address
        assert session.get(models.Contact, target.contact_id).email == target.email
        assert current_owner(session, source.contact_id) == target.contact_id
        record = session.get(models.ContactMerge, view.id)
        assert record.moved["orders"] == sorted(source_rows["orders"])

    undone = undo(crm_url, view.id)

    assert snapshot(crm_url) == before
    assert (undone.undone_by, undone.undo_reason) == ("tess", "not the same person")
    assert not undone.active and undone.undone_at == NOW + timedelta(hours=1)
    assert {t: set(ids) for t, ids in undone.moved_back.items()} == {
        t: set(ids) for t, ids in view.moved.items()
    }
    assert [m.id for m in list_merges(session_factory(crm_url), source.contact_id)] == [view.id]


def test_rows_created_or_moved_away_after_the_merge_are_not_taken_back(
    crm_url: str, tmp_path: Path
) -> None:
    source, target = two_customers(crm_url, tmp_path)
    before = snapshot(crm_url)
    view = merge(crm_url, source.contact_id, target.contact_id)
    # After the merge: a new channel and conversation on the target, and one of the
    # source's identities proven by a third contact.
    factory = session_factory(crm_url)
    t1 = source.started_at + 600
    InteractionLog(factory).record_events(
        [*session_start("web-late", t1), user("web-late", t1 + 1, "hello again", "greet")]
    )
    with unit_of_work(factory) as session:
        third = models.Contact(name="Third Person", email="third@example.org")
        session.add(third)
        session.flush()
        third_id = third.id
        late = link(session, "rest", "web-late", target.contact_id, EMAIL_CODE, NOW)
        session.flush()
        late_identity = late.id
        late_interaction = session.execute(
            select(models.Interaction).where(models.Interaction.sender_id == "web-late")
        ).scalar_one()
        late_interaction.contact_id = target.contact_id
        late_interaction_id = late_interaction.id
        link(session, "telegram", source.telegram_sender, third_id, EMAIL_CODE, NOW)

    undone = undo(crm_url, view.id)

    after = owned(crm_url, target.contact_id)
    assert late_identity in after["channel_identities"]
    assert late_interaction_id in after["interactions"]
    with unit_of_work(factory) as session:
        telegram = session.execute(
            select(models.ChannelIdentity).where(
                models.ChannelIdentity.external_id == source.telegram_sender
            )
        ).scalar_one()
        assert telegram.contact_id == third_id  # not taken from its new owner
    assert telegram.id not in undone.moved_back["channel_identities"]
    assert telegram.id in undone.moved["channel_identities"]
    # Everything else is exactly as before the merge.
    restored = snapshot(crm_url)
    for table, rows in before.items():
        changed = {late_identity, telegram.id} if table == "channel_identities" else set()
        changed |= {late_interaction_id} if table == "interactions" else set()
        changed |= {third_id} if table == "contacts.merged_into_id" else set()
        assert [r for r in restored[table] if r[0] not in changed] == [
            r for r in rows if r[0] not in changed
        ]


def test_refusals_say_why(crm_url: str, tmp_path: Path) -> None:
    source, target = two_customers(crm_url, tmp_path)
    other = seed_customer(crm_url, tmp_path, order_number="20003")
    with pytest.raises(InvalidInput, match="into itself"):
        merge(crm_url, source.email, str(source.contact_id))
    with pytest.raises(InvalidInput, match="why") as empty:
        merge(crm_url, source.contact_id, target.contact_id, reason="   ")
    assert empty.value.field == "reason"
    with pytest.raises(ContactNotFound, match="source"):
        merge(crm_url, 424242, target.contact_id)
    with pytest.raises(ContactNotFound, match="target"):
        merge(crm_url, source.contact_id, "nobody@example.org")
    with pytest.raises(InvalidInput):
        merge(crm_url, "not-a-contact", target.contact_id)

    first = merge(crm_url, source.contact_id, target.contact_id)
    with pytest.raises(Conflict, match=f"already merged into contact #{target.contact_id}"):
        merge(crm_url, source.contact_id, other.contact_id)
    with pytest.raises(Conflict, match=f"merge into contact #{target.contact_id} instead"):
        merge(crm_url, other.contact_id, source.contact_id)
    with pytest.raises(InvalidInput, match="why"):
        unmerge(session_factory(crm_url), first.id, "tess", "")
    with pytest.raises(NotFound, match="No merge #999"):
        undo(crm_url, 999)
    undo(crm_url, first.id)
    with pytest.raises(Conflict, match="already undone"):
        undo(crm_url, first.id)
    assert len(list_merges(session_factory(crm_url))) == 1  # refusals record nothing


def test_an_erased_contact_takes_no_part(crm_url: str, tmp_path: Path) -> None:
    from tests.unit.test_erasure import erase

    source, target = two_customers(crm_url, tmp_path)
    erase(crm_url, source.contact_id)
    with pytest.raises(Conflict, match="erased"):
        merge(crm_url, source.contact_id, target.contact_id)
    with pytest.raises(Conflict, match="erased"):
        merge(crm_url, target.contact_id, source.contact_id)


def test_a_later_merge_of_the_target_must_be_undone_first(crm_url: str, tmp_path: Path) -> None:
    a, b = two_customers(crm_url, tmp_path)
    c = seed_customer(crm_url, tmp_path, order_number="20003")
    before = snapshot(crm_url)
    a_into_b = merge(crm_url, a.contact_id, b.contact_id)
    b_into_c = merge(crm_url, b.contact_id, c.contact_id)  # a's rows go along to c
    assert len(owned(crm_url, c.contact_id)["orders"]) == 3
    with unit_of_work(session_factory(crm_url)) as session:
        assert current_owner(session, a.contact_id) == c.contact_id

    with pytest.raises(Conflict, match=f"undo merge #{b_into_c.id} first"):
        undo(crm_url, a_into_b.id)
    undo(crm_url, b_into_c.id)
    undo(crm_url, a_into_b.id)

    assert snapshot(crm_url) == before
    assert [m.id for m in list_merges(session_factory(crm_url), b.email)] == [
        b_into_c.id,
        a_into_b.id,
    ]
    assert [m.id for m in list_merges(session_factory(crm_url), a.contact_id)] == [a_into_b.id]


def test_the_pair_can_be_merged_the_other_way_after_an_unmerge(
    crm_url: str, tmp_path: Path
) -> None:
    source, target = two_customers(crm_url, tmp_path)
    undo(crm_url, merge(crm_url, source.contact_id, target.contact_id).id)
    target_rows = owned(crm_url, target.contact_id)
    second = merge(crm_url, target.contact_id, source.contact_id, reason="the other way round")
    assert {t: set(ids) for t, ids in second.moved.items()} == {
        t: target_rows[t] for t, _ in MOVED_TABLES
    }


def test_cli_merge_merges_unmerge_and_show_contact(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = two_customers(crm_url, tmp_path)
    before = snapshot(crm_url)

    code, out, err = run(
        capsys, crm_url, "merge", source.email, target.email, "--reason", "same person",
        "--actor", "tess", "--yes",
    )  # fmt: skip
    assert code == 0, err
    merge_id = list_merges(session_factory(crm_url))[0].id
    assert f"Merge #{merge_id}: contact #{source.contact_id} merged into contact " in out
    assert "  channel_identities: 2" in out and "  orders: 1" in out
    assert source.email not in out and source.name not in out

    code, out, _ = run(capsys, crm_url, "show-contact", target.email)
    assert code == 0
    assert f"rest:{source.rest_sender}  link_token (proven)" in out
    assert f"telegram:{target.telegram_sender}  order_email (order and email only)" in out
    assert f"#{merge_id}  contact #{source.contact_id} -> #{target.contact_id}" in out
    assert "by tess: same person" in out
    assert "20001" in out and "20002" in out  # both customers' orders
    code, out, _ = run(capsys, crm_url, "show-contact", str(source.contact_id), "--json")
    data = json.loads(out)
    assert data["merged_into"] == target.contact_id and data["channel_identities"] == []
    assert data["merges"][0]["moved"]["interactions"] == 1

    code, out, _ = run(capsys, crm_url, "merges", str(target.contact_id))
    assert code == 0 and f"#{merge_id}  contact #{source.contact_id}" in out

    code, _, err = run(capsys, crm_url, "unmerge", str(merge_id), "--reason", "")
    assert code == 2 and "why" in err
    code, out, err = run(
        capsys, crm_url, "unmerge", str(merge_id), "--reason", "two people", "--actor", "tess"
    )
    assert code == 0, err
    assert f"Merge #{merge_id} undone" in out and "  channel_identities: 2" in out
    assert snapshot(crm_url) == before
    code, out, _ = run(capsys, crm_url, "merges")
    assert "[undone " in out and "by tess: two people]" in out
    code, _, err = run(capsys, crm_url, "unmerge", str(merge_id), "--reason", "again")
    assert code == 2 and "already undone" in err


def test_cli_refusals_and_confirmation(
    crm_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    source, target = two_customers(crm_url, tmp_path)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, _, err = run(capsys, crm_url, "merge", "1", "2", "--reason", "same")
    assert code == 1 and "Nothing merged" in err
    code, _, err = run(capsys, crm_url, "merge", "424242", "2", "--reason", "same", "--yes")
    assert code == 1 and "No contact matches the source" in err
    code, _, err = run(capsys, crm_url, "merge", "1", "1", "--reason", "same", "--yes")
    assert code == 2 and "into itself" in err
    code, _, err = run(capsys, crm_url, "unmerge", "77", "--reason", "why not")
    assert code == 1 and "No merge #77" in err
    code, out, _ = run(capsys, crm_url, "merges", "alice@example.com")
    assert code == 0 and "No merges." in out
    assert list_merges(session_factory(crm_url)) == []


def test_a_proof_of_a_merged_contact_links_the_contact_it_became(
    crm_url: str, tmp_path: Path
) -> None:
    from crm_bridge.sql_gateway import SqlCrmGateway

    source, target = two_customers(crm_url, tmp_path)
    merge(crm_url, source.contact_id, target.contact_id)
    gateway = SqlCrmGateway.from_url(crm_url)
    # A code sent to the source's (old) email proves the source id...
    gateway.link_identity("telegram", "tg-merged", source.contact_id, proof=EMAIL_CODE)
    linked = gateway.find_contact_by_identity("telegram", "tg-merged", proven=True)
    # ...and the link goes to the contact that holds the source's rows now.
    assert linked is not None and linked.id == target.contact_id
