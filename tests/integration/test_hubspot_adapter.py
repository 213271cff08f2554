"""The HubSpot adapter (official hubspot-api-client) against a fake HubSpot on 127.0.0.1:
a conversation lands as the right objects, redeliveries create nothing new (also after a
crash between the remote write and storing its id), HubSpot's errors become retryable or
permanent outbox errors, and a burst stays under HubSpot's limits at the server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from crm_bridge.remote.base import EventKind, OutboxEvent, RemotePermanent, RemoteRetryable
from crm_bridge.remote.hubspot import HubSpotCrm, hubspot_limiter
from crm_bridge.settings import PROJECT_ROOT, CrmSettings
from tests.fakes.hubspot_api import FakeHubSpotApi
from tests.integration.conftest import HUBSPOT_TOKEN

pytestmark = pytest.mark.integration

TOKEN = HUBSPOT_TOKEN
ALICE = {
    "id": 1,
    "name": "Alice Example",
    "email": "alice@example.com",
    "phone": "+447700900001",
    "identities": [{"channel": "telegram", "external_id": "12345"}],
}
CONVERSATION = {
    "contact": ALICE,
    "channel": "telegram",
    "started_at": "2024-05-01T10:00:00+00:00",
    "ended_at": "2024-05-01T10:05:30+00:00",
    "outcome": "ticket_created",
    "intents": ["order_status", "complain"],
    "transcript": [
        {
            "direction": "inbound",
            "author": "customer",
            "time": "2024-05-01T10:00:00+00:00",
            "text": "where is <my> order?",
        },
        {
            "direction": "outbound",
            "author": "bot",
            "time": "2024-05-01T10:00:02+00:00",
            "text": "Order 10001 is on its way.",
        },
        {
            "direction": "outbound",
            "author": "agent:7",
            "time": "2024-05-01T10:05:00+00:00",
            "text": "Sorry about that.",
        },
    ],
}
TICKET = {
    "contact": ALICE,
    "reference": "T-000007",
    "category": "complaint",
    "subject": "Parcel arrived damaged",
    "description": "The box was crushed.",
    "order_number": "10001",
}


class MemoryRefs:
    """RemoteRefs in a dict; ``fail_puts`` makes the next puts raise (a crash)."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}
        self.fail_puts = 0

    def get(self, key: str) -> str | None:
        return self.stored.get(key)

    def put(self, key: str, remote_id: str) -> None:
        if self.fail_puts:
            self.fail_puts -= 1
            raise RuntimeError("crashed before the remote id was stored")
        self.stored[key] = remote_id


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def adapter_for(
    fake: FakeHubSpotApi, clock: FakeClock | None = None, **settings: object
) -> HubSpotCrm:
    """The adapter as the outbox builds it; its limiter on a fake clock unless told."""
    values: dict[str, object] = {
        "crm_backend": "hubspot",
        "hubspot_access_token": TOKEN,
        "hubspot_api_base_url": fake.root_url,
        "hubspot_mapping": PROJECT_ROOT / "crm" / "hubspot.yml",
        **settings,
    }
    adapter = HubSpotCrm.from_settings(CrmSettings(**values), timeout=(2.0, 0.5))  # type: ignore[arg-type]
    if clock is not None:
        adapter.limiter = hubspot_limiter(clock=clock, sleep=clock.sleep)
    return adapter


def event(
    kind: EventKind,
    key: str,
    payload: dict,
    event_id: int = 1,
    attempts: int = 1,
    contact_id: int = 1,
) -> OutboxEvent:
    """An event as the outbox hands it over: its first attempt unless told."""
    return OutboxEvent(
        id=event_id, kind=kind, contact_id=contact_id, key=key, payload=payload, attempts=attempts
    )


def deliver_all(adapter: HubSpotCrm, refs: MemoryRefs) -> None:
    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    adapter.deliver(event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION, 2), refs)
    adapter.deliver(event(EventKind.TICKET_OPENED, "ticket:7", TICKET, 3), refs)


def test_a_full_conversation_lands_as_the_right_objects(fake, clock) -> None:
    refs = MemoryRefs()
    deliver_all(adapter_for(fake, clock), refs)

    [contact] = fake.objects["contacts"].values()
    assert contact["properties"] == {
        "email": "alice@example.com",
        "phone": "+447700900001",
        "rapport_identity": "telegram:12345",
        "firstname": "Alice",
        "lastname": "Example",
    }
    [note] = fake.objects["notes"].values()
    assert note["contacts"] == [contact["id"]]
    assert note["properties"]["hs_timestamp"] == "2024-05-01T10:05:30.000Z"
    body = note["properties"]["hs_note_body"]
    assert "Conversation on telegram, 2024-05-01 10:00 UTC to 2024-05-01 10:05 UTC" in body
    assert "<p>10:00:00 <strong>Customer</strong>: where is &lt;my&gt; order?</p>" in body
    assert "10:00:02 <strong>Assistant</strong>: Order 10001 is on its way." in body
    assert "<strong>Agent 7</strong>: Sorry about that." in body
    assert "Intents: order_status, complain" in body and body.endswith(
        "[rapport:interaction:42]</p>"
    )
    [ticket] = fake.objects["tickets"].values()
    assert ticket["contacts"] == [contact["id"]]
    assert ticket["properties"]["subject"] == "T-000007 · Parcel arrived damaged"
    assert (
        ticket["properties"]["hs_pipeline"] == "0"
        and ticket["properties"]["hs_pipeline_stage"] == "1"
    )
    assert ticket["properties"]["hs_ticket_priority"] == "HIGH"
    assert "Order: 10001" in ticket["properties"]["content"]
    assert refs.stored == {
        "contact:1": contact["id"],
        "interaction:42": note["id"],
        "ticket:7": ticket["id"],
    }
    # A first attempt has nothing to look for: no search but the contact's.
    assert [c.method for c in fake.calls if c.method.startswith("search")] == ["search contacts"]


def test_a_second_delivery_creates_nothing_new(fake, clock) -> None:
    refs = MemoryRefs()
    adapter = adapter_for(fake, clock)
    deliver_all(adapter, refs)
    before = len(fake.calls)
    deliver_all(adapter, refs)

    assert [len(fake.objects[k]) for k in ("contacts", "notes", "tickets")] == [1, 1, 1]
    # Notes and tickets already stored need no request; the contact is only re-read.
    assert [c.method for c in fake.calls[before:]] == ["get contacts"]


def test_a_note_and_a_ticket_whose_ids_were_not_stored_are_found_again(fake, clock) -> None:
    refs = MemoryRefs()
    adapter = adapter_for(fake, clock)
    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    for kind, key, payload in (
        (EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION),
        (EventKind.TICKET_OPENED, "ticket:7", TICKET),
    ):
        refs.fail_puts = 1  # the worker dies after HubSpot's answer, before storing it
        with pytest.raises(RuntimeError):
            adapter.deliver(event(kind, key, payload), refs)
        adapter.deliver(event(kind, key, payload, attempts=2), refs)  # the redelivery

    assert len(fake.objects["notes"]) == 1 and len(fake.objects["tickets"]) == 1
    assert refs.stored["interaction:42"] == next(iter(fake.objects["notes"]))
    assert refs.stored["ticket:7"] == next(iter(fake.objects["tickets"]))
    assert len(fake.routes("create notes")) == 1 and len(fake.routes("create tickets")) == 1


def test_an_existing_contact_is_found_by_email_before_phone_and_identity(fake, clock) -> None:
    by_identity = fake.add("contacts", {"rapport_identity": "telegram:12345"})
    by_phone = fake.add("contacts", {"phone": "+447700900001"})
    by_email = fake.add("contacts", {"email": "Alice@Example.com", "firstname": "Al"})
    refs = MemoryRefs()
    adapter_for(fake, clock).deliver(
        event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs
    )

    assert refs.stored["contact:1"] == by_email
    assert len(fake.objects["contacts"]) == 3 and not fake.routes("create contacts")
    assert len(fake.routes("search contacts")) == 2  # three matches, two to a page
    # Only empty properties are filled in; the business's own values stay.
    assert fake.objects["contacts"][by_email]["properties"] == {
        "email": "Alice@Example.com",
        "firstname": "Al",
        "phone": "+447700900001",
        "rapport_identity": "telegram:12345",
    }
    assert by_identity != by_phone


def test_a_customer_known_only_by_channel_identity_is_found_by_it(fake, clock) -> None:
    known = fake.add("contacts", {"rapport_identity": "telegram:12345", "firstname": "Tg"})
    refs = MemoryRefs()
    anonymous = {
        "id": 1,
        "name": "",
        "email": None,
        "phone": None,
        "identities": ALICE["identities"],
    }
    adapter_for(fake, clock).deliver(
        event(
            EventKind.CONVERSATION_LOGGED, "interaction:42", {**CONVERSATION, "contact": anonymous}
        ),
        refs,
    )

    assert refs.stored["contact:1"] == known
    assert next(iter(fake.objects["notes"].values()))["contacts"] == [known]


def test_new_contact_details_are_patched(fake, clock) -> None:
    refs = MemoryRefs()
    adapter = adapter_for(fake, clock)
    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    changed = {**ALICE, "email": "alice@new.example.com", "phone": "+447700900999"}
    adapter.deliver(event(EventKind.CONTACT_UPDATED, "contact:1", {"contact": changed}), refs)

    [contact] = fake.objects["contacts"].values()
    assert contact["properties"]["email"] == "alice@new.example.com"
    assert contact["properties"]["phone"] == "+447700900999"
    [patch] = fake.routes("update contacts")
    assert patch.params == {
        "properties": {"email": "alice@new.example.com", "phone": "+447700900999"}
    }


def test_a_429_is_retryable_after_retry_after_and_pauses_the_limiter(fake, clock) -> None:
    refs = MemoryRefs()
    adapter = adapter_for(fake, clock)
    fake.fail_next(429, route="search contacts", retry_after=7)
    with pytest.raises(RemoteRetryable) as caught:
        adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    assert caught.value.retry_after == 7.0
    assert "RATE_LIMITS" in str(caught.value)

    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    assert sum(clock.slept) >= 7.0  # every worker of the process waited it out
    assert len(fake.objects["contacts"]) == 1


def test_a_server_error_a_timeout_and_no_connection_are_retryable(fake, clock) -> None:
    refs = MemoryRefs()
    adapter = adapter_for(fake, clock)
    upsert = event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE})
    fake.fail_next(500)
    with pytest.raises(RemoteRetryable, match="500"):
        adapter.deliver(upsert, refs)
    fake.delay_next(1.5, route="search contacts")  # the adapter reads for 0.5 s
    started = time.monotonic()
    with pytest.raises(RemoteRetryable, match="unreachable"):
        adapter.deliver(upsert, refs)
    assert time.monotonic() - started < 1.4
    fake.stop()
    with pytest.raises(RemoteRetryable, match="unreachable"):
        adapter.deliver(upsert, refs)
    assert refs.stored == {}


def test_a_validation_error_is_permanent_and_names_no_personal_data(fake, clock) -> None:
    refs = MemoryRefs()
    bad = {**ALICE, "email": "alice@@example", "phone": None, "identities": []}
    with pytest.raises(RemotePermanent) as caught:
        adapter_for(fake, clock).deliver(
            event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": bad}), refs
        )
    message = str(caught.value)
    assert "400 VALIDATION_ERROR" in message and "create contact" in message
    assert "alice" not in message.lower()


def test_a_wrong_token_is_retryable_and_never_shown(fake, clock) -> None:
    adapter = adapter_for(fake, clock, hubspot_access_token="pat-eu1-wrong-secret")
    with pytest.raises(RemoteRetryable) as caught:
        adapter.deliver(
            event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), MemoryRefs()
        )
    assert "HUBSPOT_ACCESS_TOKEN" in str(caught.value) and "401" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)


def most_in_window(times: list[float], seconds: float) -> int:
    """The largest number of ``times`` (sorted) inside any window of ``seconds``."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_a_burst_of_500_conversations_stays_under_the_limits_at_hubspot(fake) -> None:
    # 500 conversations of 100 customers new to HubSpot (each one's first event finds no
    # contact by search and creates it): 100 searches and 600 creates. HubSpot's limits on
    # a fifth of the time (190 per 2 s, 4 searches per 0.2 s), checked where it counts: at
    # the server. Four workers share the process's limiter, as the outbox's do; one
    # customer's events go in order, as the outbox hands them over.
    adapter = adapter_for(fake)
    adapter.limiter = hubspot_limiter(190, 4, time_scale=0.2)
    refs = MemoryRefs()

    def customer(n: int) -> None:
        person = {**ALICE, "id": n, "email": f"customer{n}@example.com", "phone": None}
        person["identities"] = [{"channel": "telegram", "external_id": str(n)}]
        for m in range(5):
            when = f"2024-05-01T{10 + m}:{n // 60:02d}:{n % 60:02d}+00:00"
            payload = {**CONVERSATION, "contact": person, "ended_at": when}
            key = f"interaction:{n * 10 + m}"
            adapter.deliver(event(EventKind.CONVERSATION_LOGGED, key, payload, contact_id=n), refs)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(customer, range(100)))

    assert len(fake.objects["contacts"]) == 100 and len(fake.objects["notes"]) == 500
    everything = sorted(c.at for c in fake.calls)
    searches = sorted(c.at for c in fake.calls if c.method.startswith("search"))
    assert len(everything) == 700 and len(searches) == 100
    assert most_in_window(everything, 2.0) <= 190
    assert most_in_window(searches, 0.2) <= 4
    # ...and not far under them: about 700 / 190 * 2.1 s, or 100 / 4 * 0.3 s.
    assert time.monotonic() - started < 15


def test_a_create_that_timed_out_but_happened_is_found_on_the_next_attempt(fake, clock) -> None:
    refs = MemoryRefs()
    adapter = adapter_for(fake, clock)
    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    fake.delay_next(1.0, route="create notes")  # HubSpot makes the note, we stop waiting
    logged = event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION)
    with pytest.raises(RemoteRetryable):
        adapter.deliver(logged, refs)
    time.sleep(1.2)
    adapter.deliver(
        event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION, attempts=2), refs
    )

    assert len(fake.objects["notes"]) == 1
    assert refs.stored["interaction:42"] == next(iter(fake.objects["notes"]))


def test_the_mapping_file_is_checked_when_the_adapter_is_built(fake, tmp_path: Path) -> None:
    broken = tmp_path / "hubspot.yml"
    broken.write_text("contact: {identity_property: rapport_identity}\ntickets: {}\n")
    with pytest.raises(
        Exception, match=r"hubspot.yml is not a valid mapping(.|\n)*tickets.complaint"
    ):
        adapter_for(fake, hubspot_mapping=broken)
