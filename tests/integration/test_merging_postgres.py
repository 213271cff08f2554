"""Contact merges on PostgreSQL: a merge/un-merge round trip restores every row's owner,
and two operators merging one pair in opposite directions at once cannot both win."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crm_bridge.db import session_factory
from crm_bridge.errors import Conflict
from crm_bridge.merging import KEPT_TABLES, MOVED_TABLES, list_merges, merge_contacts
from tests.unit.test_merging import merge, owned, snapshot, two_customers, undo

pytestmark = pytest.mark.integration


def test_merge_and_unmerge_round_trip(postgres_crm_url: str, tmp_path: Path) -> None:
    url = postgres_crm_url
    source, target = two_customers(url, tmp_path)
    before = snapshot(url)
    source_rows, target_rows = owned(url, source.contact_id), owned(url, target.contact_id)

    view = merge(url, source.email, target.email)

    merged = owned(url, target.contact_id)
    for table, _ in MOVED_TABLES:
        assert merged[table] == source_rows[table] | target_rows[table]
        assert set(view.moved[table]) == source_rows[table]
    for table in KEPT_TABLES:
        assert owned(url, source.contact_id)[table] == source_rows[table]

    undone = undo(url, view.id)

    assert snapshot(url) == before
    assert not undone.active and undone.moved_back == view.moved


def test_opposite_merges_at_once_leave_one_merge(postgres_crm_url: str, tmp_path: Path) -> None:
    url = postgres_crm_url
    a, b = two_customers(url, tmp_path)
    factory = session_factory(url)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(source: int, target: int) -> None:
        start.wait()
        try:
            merge_contacts(factory, source, target, "tess", "same person")
            outcomes.append("merged")
        except Conflict:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=attempt, args=(a.contact_id, b.contact_id)),
        threading.Thread(target=attempt, args=(b.contact_id, a.contact_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["merged", "refused"]
    assert len(list_merges(factory)) == 1
