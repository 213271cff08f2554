"""The transactional outbox to a remote CRM: recording with the local write, delivery in
order per contact, retries that never lose anything, idempotent redelivery, parking."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from crm_bridge import cli, models
from crm_bridge import settings as crm_settings
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, CrmUnavailable, SettingsError
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.interaction_log import InteractionLog, close_idle
from crm_bridge.outbox import LEASE_SECONDS, OutboxWorker, backoff_seconds, record
from crm_bridge.outbox_admin import retry, status
from crm_bridge.remote.base import (
    EventKind,
    OutboxEvent,
    RemotePermanent,
    RemoteRefs,
    RemoteRetryable,
)
from crm_bridge.remote.registry import remote_crm_from_settings
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.unit.test_interaction_log import bot, session_start, user

# The workers' clock runs ahead of real time, so what the CLI queues (at real now) is due.
T0 = datetime.now(timezone.utc) + timedelta(hours=1)


class Crash(BaseException):
    """The worker process killed (not an error the worker could handle)."""


class FakeCrm:
    """A remote CRM in memory: counts the records it creates per key."""

    name = "hubspot"

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}  # remote id -> record
        self.created: Counter[str] = Counter()  # key -> records created for it
        self.delivered: list[tuple[int, int, str]] = []  # (event id, contact id, key)
        self.failures: list[BaseException] = []  # raised by the next calls, in order
        self.down = False
        self.crash = ""  # "after_write": killed before our ack; "before_ref": before put
        self.external_ids = False  # find a record by its key, as HubSpot's search does
        self.lock = threading.Lock()

    def deliver(self, event: OutboxEvent, refs: RemoteRefs) -> None:
        with self.lock:
            if self.down:
                raise RemoteRetryable("503 from the CRM")
            if self.failures:
                raise self.failures.pop(0)
            remote_id = refs.get(event.key)
            if remote_id is None and self.external_ids:
                remote_id = next(
                    (r for r, v in self.records.items() if v["key"] == event.key), None
                )
            if remote_id is None:
                remote_id = f"r{len(self.records) + 1}"
                self.created[event.key] += 1
            self.records[remote_id] = {"key": event.key, "payload": event.payload}
            if self.crash == "before_ref":
                raise Crash
            refs.put(event.key, remote_id)
            if self.crash == "after_write":
                raise Crash
            self.delivered.append((event.id, event.contact_id, event.key))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def factory(crm_url: str):
    return session_factory(crm_url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def add(factory, contact_id: int, key: str, kind: EventKind = EventKind.CONTACT_UPDATED) -> int:
    with unit_of_work(factory) as session:
        event = record(session, "hubspot", kind, contact_id, key, {"n": key})
        session.flush()
        return int(event.id)


def worker(factory, crm: FakeCrm, clock: Clock) -> OutboxWorker:
    return OutboxWorker(factory, crm, now=clock, sleep=lambda _: None)


def rows(factory) -> list[models.OutboxEvent]:
    with unit_of_work(factory) as session:
        return list(
            session.execute(select(models.OutboxEvent).order_by(models.OutboxEvent.id)).scalars()
        )


def test_events_go_out_in_order_per_contact_and_a_waiting_one_holds_back_only_its_contact(
    factory, clock: Clock
) -> None:
    crm = FakeCrm()
    a1, b1, a2, b2, a3 = (add(factory, c, f"k{i}") for i, c in enumerate([1, 2, 1, 2, 1]))
    crm.failures = [RemoteRetryable("429", retry_after=30)]  # alice's first: rate limited

    report = worker(factory, crm, clock).run_once()

    assert (report.delivered, report.retried) == (2, 1)
    assert [d[0] for d in crm.delivered] == [b1, b2]  # alice's later ones waited
    clock.advance(31)
    worker(factory, crm, clock).run_once()
    assert [d[0] for d in crm.delivered if d[1] == 1] == [a1, a2, a3]


def test_an_outage_backs_off_then_delivers_every_event_exactly_once(factory, clock) -> None:
    crm = FakeCrm()
    ids = [add(factory, contact, f"interaction:{n}") for n, contact in enumerate([1, 2, 3])]
    crm.down = True
    waits = []
    for _ in range(4):
        worker(factory, crm, clock).run_once()
        event = rows(factory)[0]
        waits.append((event.next_attempt_at - clock.now).total_seconds())
        clock.advance(waits[-1])
    assert waits == [5, 10, 20, 40]  # doubling; never given up
    assert {row.status for row in rows(factory)} == {"pending"}
    assert backoff_seconds(30) == 600 and backoff_seconds(1, retry_after=12) == 12

    crm.down = False
    worker(factory, crm, clock).run_once()

    assert sorted(d[0] for d in crm.delivered) == ids
    assert all(count == 1 for count in crm.created.values()) and len(crm.created) == 3
    first = rows(factory)[0]
    assert (first.status, first.payload, first.attempts) == ("delivered", {}, 5)


@pytest.mark.parametrize("crash", ["after_write", "before_ref"])
def test_a_worker_killed_after_the_remote_write_creates_no_second_record(
    factory, clock: Clock, crash: str
) -> None:
    crm = FakeCrm()
    crm.crash, crm.external_ids = crash, crash == "before_ref"
    event_id = add(factory, 1, "ticket:7", EventKind.TICKET_OPENED)
    with pytest.raises(Crash):
        worker(factory, crm, clock).run_once()
    crm.crash = ""

    other = worker(factory, crm, clock)
    clock.advance(LEASE_SECONDS - 1)
    assert other.run_once().handled == 0  # the dead worker's lease still holds
    clock.advance(2)
    assert other.run_once().delivered == 1

    assert crm.created == Counter({"ticket:7": 1}) and len(crm.records) == 1
    assert crm.delivered == [(event_id, 1, "ticket:7")]


def test_the_same_key_recorded_twice_updates_the_one_remote_record(factory, clock) -> None:
    crm = FakeCrm()
    add(factory, 1, "contact:1")
    add(factory, 1, "contact:1")
    worker(factory, crm, clock).run_once()
    assert len(crm.delivered) == 2
    assert crm.created == Counter({"contact:1": 1}) and len(crm.records) == 1


def test_a_permanent_error_is_parked_reported_retried_or_dropped(
    factory, clock: Clock, crm_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = FakeCrm()
    first, second, third = (add(factory, 1, f"ticket:{n}") for n in range(3))
    crm.failures = [RemotePermanent("400 VALIDATION_ERROR: property 'phone' is invalid")]
    worker(factory, crm, clock).run_once()

    report = status(factory)
    assert report.counts["parked"] == 1 and report.counts["pending"] == 2
    parked = report.parked[0]
    assert (parked.id, parked.blocks) == (first, 2)
    assert "VALIDATION_ERROR" in parked.last_error and crm.delivered == []
    assert cli.main(["--database-url", crm_url, "outbox", "status"]) == 0
    assert "parked=1" in capsys.readouterr().out

    retry(factory, first)
    crm.failures = [RemotePermanent("404: the contact was deleted")]
    worker(factory, crm, clock).run_once()
    assert cli.main(["--database-url", crm_url, "outbox", "drop", str(first), "--actor", "t"]) == 0
    with pytest.raises(Conflict):
        retry(factory, first)
    worker(factory, crm, clock).run_once()

    assert [d[0] for d in crm.delivered] == [second, third]
    dropped = rows(factory)[0]
    assert (dropped.status, dropped.dropped_by, dropped.payload) == ("dropped", "t", {})


def test_retry_all_parked_from_the_cli(factory, clock, crm_url: str) -> None:
    crm = FakeCrm()
    add(factory, 1, "a")
    add(factory, 2, "b")
    crm.failures = [RemotePermanent("400"), RemotePermanent("400")]
    worker(factory, crm, clock).run_once()
    assert status(factory).counts["parked"] == 2
    assert cli.main(["--database-url", crm_url, "outbox", "retry", "--all-parked"]) == 0
    worker(factory, crm, clock).run_once()
    assert status(factory).counts["delivered"] == 2


def test_an_adapter_bug_parks_the_event_instead_of_spinning(factory, clock) -> None:
    crm = FakeCrm()
    add(factory, 1, "a")
    crm.failures = [KeyError("email")]
    assert worker(factory, crm, clock).run_once().parked == 1
    assert status(factory).parked[0].last_error.startswith("KeyError")


def test_two_workers_never_take_the_same_event(factory, clock) -> None:
    crm = FakeCrm()
    event_id = add(factory, 1, "a")
    first, second = worker(factory, crm, clock), worker(factory, crm, clock)
    assert first._take(event_id) is not None
    assert second._take(event_id) is None
    assert second.run_once().handled == 0


# --- recording with the local write -------------------------------------------------


def ref(sender: str = "web-chloe") -> ConversationRef:
    return ConversationRef(sender_id=sender, channel="rest", session_started_at=time.time())


def kinds(factory) -> list[tuple[str, str]]:
    return [(row.kind, row.key) for row in rows(factory)]


def test_the_gateway_records_its_writes_for_a_remote_crm(factory) -> None:
    gateway = SqlCrmGateway(factory, outbox_backend="hubspot")
    chloe = gateway.verify_order_email("10005", "chloe@example.com").contact_id
    gateway.link_identity("rest", "web-chloe", chloe, ref())
    gateway.link_identity("rest", "web-chloe", chloe, ref())  # nothing new: no event
    gateway.update_contact_details(chloe, phone="+44 7700 900123")
    ticket = gateway.open_ticket(ref(), TicketCategory.COMPLAINT, "Late", "It is late", chloe)
    alice = gateway.find_contact_by_identity("rest", "demo-alice")
    assert alice is not None
    returned = gateway.create_return(ref("demo-alice"), alice.id, "10002", "Rain Jacket", "big")

    assert kinds(factory) == [
        ("contact_upsert", f"contact:{chloe}"),
        ("contact_updated", f"contact:{chloe}"),
        ("ticket_opened", f"ticket:{ticket.id}"),
        ("ticket_opened", f"return:{returned.id}"),
    ]
    upsert, _, opened, ret = rows(factory)
    assert upsert.payload["contact"]["email"] == "chloe@example.com"
    assert {"channel": "rest", "external_id": "web-chloe"} in upsert.payload["contact"][
        "identities"
    ]
    assert opened.payload["reference"] == ticket.reference and opened.contact_id == chloe
    assert ret.payload["order_number"] == "10002" and ret.payload["category"] == "return"


def test_a_rolled_back_write_leaves_no_outbox_event(factory, monkeypatch) -> None:
    import crm_bridge.sql_gateway as sql_gateway

    real = sql_gateway.record_contact

    def record_then_fail(*args: Any) -> None:
        real(*args)
        raise CrmUnavailable("the database went away")

    monkeypatch.setattr(sql_gateway, "record_contact", record_then_fail)
    gateway = SqlCrmGateway(factory, outbox_backend="hubspot")
    bob = gateway.find_contact_by_identity("rest", "demo-bob")
    assert bob is not None
    with pytest.raises(CrmUnavailable):
        gateway.update_contact_details(bob.id, phone="+44 7700 900999")
    assert rows(factory) == []
    assert gateway.get_contact(bob.id).phone != "+447700900999"


def test_a_rolled_back_link_leaves_neither_the_link_nor_its_event(factory, monkeypatch) -> None:
    import crm_bridge.sql_gateway as sql_gateway

    real = sql_gateway.settle_contact_upsert

    def settle_then_fail(*args: Any) -> None:
        real(*args)
        raise CrmUnavailable("the database went away")

    monkeypatch.setattr(sql_gateway, "settle_contact_upsert", settle_then_fail)
    gateway = SqlCrmGateway(factory, outbox_backend="hubspot")
    chloe = gateway.verify_order_email("10005", "chloe@example.com").contact_id
    with pytest.raises(CrmUnavailable):
        gateway.link_identity("telegram", "555", chloe)
    assert rows(factory) == []
    assert gateway.find_contact_by_identity("telegram", "555") is None


def test_nothing_is_recorded_with_the_sql_backend(factory) -> None:
    for backend in (None, "sql"):
        gateway = SqlCrmGateway(factory, outbox_backend=backend)
        bob = gateway.find_contact_by_identity("rest", "demo-bob")
        assert bob is not None
        gateway.update_contact_details(bob.id, phone="+44 7700 900111")
        gateway.open_ticket(ref("demo-bob"), TicketCategory.OTHER, "x", "y", bob.id)
        log = InteractionLog(factory, outbox_backend=backend)
        log.record_events(
            [*session_start("demo-bob", 1000.0), user("demo-bob", 1001, "hi", "greet")]
        )
        log.record_events(session_start("demo-bob", 5000.0))
    assert rows(factory) == []


def conversation(sender: str, t0: float) -> list[dict]:
    return [
        *session_start(sender, t0),
        user(sender, t0 + 1, "where is my parcel?", "order_status"),
        bot(sender, t0 + 1.1, "It is on its way."),
    ]


def test_a_closed_conversation_goes_out_with_its_transcript(factory) -> None:
    log = InteractionLog(factory, outbox_backend="hubspot")
    log.record_events(conversation("demo-alice", 1000.0))
    log.record_events(conversation("stranger", 1000.0))  # no contact: nothing to mirror
    assert rows(factory) == []

    log.record_events(session_start("demo-alice", 9000.0))
    log.record_events(session_start("stranger", 9000.0))

    (event,) = rows(factory)
    with unit_of_work(factory) as session:
        alices = select(models.Interaction.id).where(models.Interaction.sender_id == "demo-alice")
        first = session.execute(alices.order_by(models.Interaction.id)).scalars().first()
    assert (event.kind, event.key) == ("conversation_logged", f"interaction:{first}")
    payload = event.payload
    assert payload["channel"] == "rest" and payload["intents"] == ["order_status"]
    assert [
        (line["direction"], line["author"], line["text"]) for line in payload["transcript"]
    ] == [
        ("inbound", "customer", "where is my parcel?"),
        ("outbound", "bot", "It is on its way."),
    ]
    assert payload["contact"]["name"] and payload["started_at"].startswith("1970-01-01")


def test_the_conversation_event_rolls_back_with_the_log(factory, monkeypatch) -> None:
    import crm_bridge.interaction_log as interaction_log

    log = InteractionLog(factory, outbox_backend="hubspot")
    log.record_events(conversation("demo-alice", 1000.0))
    real = interaction_log.record_conversation

    def record_then_fail(*args: Any) -> None:
        real(*args)
        raise CrmUnavailable("the database went away")

    monkeypatch.setattr(interaction_log, "record_conversation", record_then_fail)
    with pytest.raises(CrmUnavailable):
        log.record_events(session_start("demo-alice", 9000.0))
    assert rows(factory) == []
    with unit_of_work(factory) as session:
        first = select(models.Interaction.closed).where(
            models.Interaction.sender_id == "demo-alice",
            models.Interaction.started_at < datetime(1970, 1, 1, 1, tzinfo=timezone.utc),
        )
        assert session.execute(first).scalar_one() is False  # replaying the batch closes it


def test_idle_conversations_are_closed_and_recorded(factory) -> None:
    log = InteractionLog(factory, outbox_backend="hubspot")
    log.record_events(conversation("demo-alice", time.time() - 7200))
    log.record_events(conversation("demo-bob", time.time()))
    assert close_idle(factory, 60, "hubspot") == 1
    assert [key for _, key in kinds(factory)] == ["interaction:1"]
    assert close_idle(factory, 60, "hubspot") == 0


# --- settings, adapters, the worker command -------------------------------------------


def test_crm_backend_is_validated() -> None:
    assert crm_settings.load({}).crm_backend == "sql"
    assert crm_settings.load({"CRM_BACKEND": "SQL"}).crm_backend == "sql"
    with pytest.raises(SettingsError, match="CRM_BACKEND must be one of"):
        crm_settings.load({"CRM_BACKEND": "excel"})


def test_the_adapter_is_chosen_by_crm_backend() -> None:
    assert remote_crm_from_settings(crm_settings.load({})) is None
    # A remote backend without its credentials stops the worker, naming the variables.
    with pytest.raises(SettingsError, match="SALESFORCE_ACCESS_TOKEN"):
        remote_crm_from_settings(crm_settings.load({"CRM_BACKEND": "salesforce"}))
    with pytest.raises(SettingsError, match="HUBSPOT_ACCESS_TOKEN"):
        remote_crm_from_settings(crm_settings.load({"CRM_BACKEND": "hubspot"}))


def test_outbox_run_once_delivers_through_the_configured_adapter(
    factory, crm_url: str, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import crm_bridge.remote.registry as registry

    crm = FakeCrm()
    monkeypatch.setattr(registry, "remote_crm_from_settings", lambda settings: crm)
    add(factory, 1, "contact:1")
    assert cli.main(["--database-url", crm_url, "outbox", "run", "--once"]) == 0
    assert "delivered 1" in capsys.readouterr().out and len(crm.delivered) == 1


def test_outbox_run_with_the_sql_backend_has_nothing_to_do(crm_url: str, monkeypatch) -> None:
    monkeypatch.setenv("CRM_BACKEND", "sql")
    assert cli.main(["--database-url", crm_url, "outbox", "run", "--once"]) == 0


def test_run_forever_stops_when_asked(factory, clock) -> None:
    crm = FakeCrm()
    add(factory, 1, "a")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        runner.stop()

    runner = OutboxWorker(factory, crm, now=clock, sleep=sleep)
    runner.run_forever(interval=3)
    assert sleeps == [3] and len(crm.delivered) == 1
