"""Two outbox workers at once on PostgreSQL: each event delivered exactly once, and each
contact's events in the order they were recorded."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest

from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.outbox import OutboxWorker, record
from crm_bridge.outbox_admin import status
from crm_bridge.remote.base import EventKind, OutboxEvent, RemoteRefs, RemoteRetryable

pytestmark = pytest.mark.integration


class SlowCrm:
    """Records each delivery; slow enough that the two workers overlap, and refuses
    every seventh call (a 429) so that retries interleave too."""

    name = "hubspot"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.delivered: list[tuple[int, int]] = []  # (contact id, event id)
        self.in_flight: set[int] = set()  # contacts being written right now
        self.overlaps = 0  # a contact written by two workers at once (must stay 0)

    def deliver(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        with self.lock:
            self.calls += 1
            if self.calls % 7 == 0:
                raise RemoteRetryable("429", retry_after=0)
            if event.contact_id in self.in_flight:
                self.overlaps += 1
            self.in_flight.add(event.contact_id)
        time.sleep(0.002)
        if refs.get(event.key) is None:
            refs.put(event.key, f"remote-{event.id}")
        with self.lock:
            self.in_flight.discard(event.contact_id)
            self.delivered.append((event.contact_id, event.id))


def test_two_workers_deliver_each_event_once_in_order_per_contact(postgres_crm_url: str) -> None:
    factory = session_factory(postgres_crm_url)
    recorded: dict[int, list[int]] = defaultdict(list)
    with unit_of_work(factory) as session:
        for n in range(60):
            contact = 1 + n % 3  # the seeded contacts
            event = record(session, "hubspot", EventKind.TICKET_OPENED, contact, f"ticket:{n}", {})
            session.flush()
            recorded[contact].append(event.id)
    crm = SlowCrm()
    workers = [OutboxWorker(factory, crm, sleep=lambda _: None) for _ in range(2)]

    def drain(worker: OutboxWorker) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status(factory).counts["pending"]:
            worker.run_once(limit=5)

    threads = [threading.Thread(target=drain, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert status(factory).counts["delivered"] == 60
    assert Counter(event_id for _, event_id in crm.delivered).most_common(1)[0][1] == 1
    assert len(crm.delivered) == 60 and crm.overlaps == 0
    for contact, ids in recorded.items():
        assert [e for c, e in crm.delivered if c == contact] == ids
