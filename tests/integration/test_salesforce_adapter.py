"""The Salesforce adapter (simple-salesforce) against a fake Salesforce on 127.0.0.1: a
conversation lands as a Contact, a completed Task with its transcript and a Case;
redeliveries and a crash before the remote ids were stored create nothing new (every write
is an upsert on our External ID); Salesforce's errors become retryable or permanent
outbox errors; Lead mode; the daily API-call share is kept."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from crm_bridge.errors import SettingsError
from crm_bridge.remote.base import EventKind, RemotePermanent, RemoteRetryable
from crm_bridge.remote.salesforce import SalesforceCrm, salesforce_limiter
from crm_bridge.settings import PROJECT_ROOT, CrmSettings
from tests.fakes.salesforce_api import FakeSalesforceApi
from tests.integration.conftest import SALESFORCE_SESSION_ID
from tests.integration.test_hubspot_adapter import (
    ALICE,
    CONVERSATION,
    TICKET,
    FakeClock,
    MemoryRefs,
    event,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def adapter_for(
    fake: FakeSalesforceApi, clock: FakeClock | None = None, **settings: object
) -> SalesforceCrm:
    """The adapter as the outbox builds it; its limiter on a fake clock unless told."""
    values: dict[str, object] = {
        "crm_backend": "salesforce",
        "salesforce_instance_url": fake.root_url,
        "salesforce_access_token": SALESFORCE_SESSION_ID,
        "salesforce_mapping": PROJECT_ROOT / "crm" / "salesforce.yml",
        **settings,
    }
    adapter = SalesforceCrm.from_settings(CrmSettings(**values), timeout=(2.0, 0.5))  # type: ignore[arg-type]
    if clock is not None:
        adapter.limiter = salesforce_limiter(15000, clock=clock, sleep=clock.sleep)
    return adapter


def deliver_all(adapter: SalesforceCrm, refs: MemoryRefs) -> None:
    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    adapter.deliver(event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION, 2), refs)
    adapter.deliver(event(EventKind.TICKET_OPENED, "ticket:7", TICKET, 3), refs)


def lead_mapping(tmp_path: Path) -> Path:
    text = (PROJECT_ROOT / "crm" / "salesforce.yml").read_text()
    path = tmp_path / "salesforce.yml"
    path.write_text(text.replace("object: Contact", "object: Lead"))
    return path


def test_a_full_conversation_lands_as_contact_task_and_case(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    deliver_all(adapter_for(fake, clock), refs)

    [contact] = fake.records["Contact"].values()
    assert {k: v for k, v in contact.items() if k != "Id"} == {
        "Rapport_Key__c": "contact-1",
        "FirstName": "Alice",
        "LastName": "Example",
        "Email": "alice@example.com",
        "Phone": "+447700900001",
        "Rapport_Identity__c": "telegram:12345",
    }
    [task] = fake.records["Task"].values()
    assert task["WhoId"] == contact["Id"] and task["Rapport_Key__c"] == "interaction-42"
    assert (task["Status"], task["Type"], task["Subject"]) == (
        "Completed",
        "Chat",
        "Chat on telegram",
    )
    assert task["ActivityDate"] == "2024-05-01"
    description = task["Description"]
    assert "Conversation on telegram, 2024-05-01 10:00 UTC to 2024-05-01 10:05 UTC" in description
    assert "10:00:00 Customer: where is <my> order?" in description  # plain text: not escaped
    assert "Agent 7: Sorry about that." in description
    assert description.endswith("[rapport:interaction:42]")
    [case] = fake.records["Case"].values()
    assert case["ContactId"] == contact["Id"] and case["Rapport_Key__c"] == "ticket-7"
    assert case["Subject"] == "T-000007 · Parcel arrived damaged"
    assert (case["Status"], case["Origin"], case["Priority"]) == ("New", "Web", "High")
    assert "Order: 10001" in case["Description"]
    assert refs.stored == {
        "contact:1": contact["Id"],
        "interaction:42": task["Id"],
        "ticket:7": case["Id"],
    }
    assert [c.method for c in fake.calls] == ["upsert Contact", "upsert Task", "upsert Case"]


def test_a_new_customer_and_their_task_are_one_composite_request(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = adapter_for(fake, clock)
    adapter.deliver(event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION), refs)

    [call] = fake.calls
    assert call.method == "composite" and call.params["allOrNone"] is True
    parts = call.params["compositeRequest"]
    assert [p["url"] for p in parts] == [
        "/services/data/v59.0/sobjects/Contact/Rapport_Key__c/contact-1",
        "/services/data/v59.0/sobjects/Task/Rapport_Key__c/interaction-42",
    ]
    assert parts[1]["body"]["WhoId"] == "@{refContact.id}"
    [contact] = fake.records["Contact"].values()
    [task] = fake.records["Task"].values()
    assert task["WhoId"] == contact["Id"]
    assert refs.stored == {"contact:1": contact["Id"], "interaction:42": task["Id"]}


def test_a_second_delivery_creates_nothing_new(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = adapter_for(fake, clock)
    deliver_all(adapter, refs)
    before = len(fake.calls)
    deliver_all(adapter, refs)

    assert [len(fake.records[k]) for k in ("Contact", "Task", "Case")] == [1, 1, 1]
    # A stored Task or Case needs no request; the contact is upserted again (an update).
    assert [c.method for c in fake.calls[before:]] == ["upsert Contact"]


def test_a_crash_before_the_ids_were_stored_creates_nothing_new(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = adapter_for(fake, clock)
    for kind, key, payload in (
        (EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION),  # composite
        (EventKind.TICKET_OPENED, "ticket:7", TICKET),  # the contact known: alone
    ):
        refs.fail_puts = 2  # the worker dies after Salesforce's answer
        with pytest.raises(RuntimeError):
            adapter.deliver(event(kind, key, payload), refs)
        refs.fail_puts = 0
        adapter.deliver(event(kind, key, payload, attempts=2), refs)  # the redelivery

    assert [len(fake.records[k]) for k in ("Contact", "Task", "Case")] == [1, 1, 1]
    assert refs.stored["interaction:42"] == next(iter(fake.records["Task"]))
    assert refs.stored["ticket:7"] == next(iter(fake.records["Case"]))
    # An update answered 204 carries no id: it was read back by External ID, once.
    assert len(fake.routes("read Case")) == 1


def test_a_write_that_timed_out_but_happened_is_not_repeated(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = adapter_for(fake, clock)
    fake.delay_next(1.0, route="composite")  # Salesforce writes, we stop waiting
    logged = event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION)
    with pytest.raises(RemoteRetryable, match="unreachable"):
        adapter.deliver(logged, refs)
    time.sleep(0.6)
    adapter.deliver(logged, refs)
    assert len(fake.records["Contact"]) == 1 and len(fake.records["Task"]) == 1


def test_rate_limits_and_outages_are_retryable(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = adapter_for(fake, clock)
    upsert = event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE})
    fake.fail_next(429, retry_after=7)
    with pytest.raises(RemoteRetryable) as caught:
        adapter.deliver(upsert, refs)
    assert caught.value.retry_after == 7.0
    adapter.deliver(upsert, refs)
    assert sum(clock.slept) >= 7.0  # every worker of the process waited it out
    for status, code in ((403, "REQUEST_LIMIT_EXCEEDED"), (503, "SERVER_UNAVAILABLE"), (500, "")):
        fake.fail_next(status, code=code)
        with pytest.raises(RemoteRetryable, match=str(status)):
            adapter.deliver(upsert, refs)
    fake.delay_next(1.5)  # the adapter reads for 0.5 s
    started = time.monotonic()
    with pytest.raises(RemoteRetryable, match="unreachable"):
        adapter.deliver(upsert, refs)
    assert time.monotonic() - started < 1.4
    fake.stop()
    with pytest.raises(RemoteRetryable, match="unreachable"):
        adapter.deliver(upsert, refs)


def test_a_failure_in_a_composite_rolls_back_and_names_the_cause(fake_salesforce, clock) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    bad = {**ALICE, "email": "alice@@example"}
    with pytest.raises(RemotePermanent) as caught:
        adapter_for(fake, clock).deliver(
            event(EventKind.TICKET_OPENED, "ticket:7", {**TICKET, "contact": bad}), refs
        )
    message = str(caught.value)
    assert "400 INVALID_EMAIL_ADDRESS" in message and "alice" not in message.lower()
    assert fake.records["Contact"] == {} and fake.records["Case"] == {}
    assert refs.stored == {}


def test_a_missing_required_field_is_permanent(fake_salesforce, clock) -> None:
    adapter = adapter_for(fake_salesforce, clock)
    # A Lead without a Company (a mapping the loader would refuse, set here directly).
    adapter.mapping = dataclasses.replace(adapter.mapping, contact_object="Lead", lead_company="")
    upsert = event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE})
    with pytest.raises(RemotePermanent) as caught:
        adapter.deliver(upsert, MemoryRefs())
    assert str(caught.value) == "Salesforce refused to upsert lead: 400 REQUIRED_FIELD_MISSING"


def test_a_wrong_session_is_retryable_and_names_the_variables(fake_salesforce, clock) -> None:
    adapter = adapter_for(fake_salesforce, clock, salesforce_access_token="00Dwrong!secret")
    with pytest.raises(RemoteRetryable) as caught:
        adapter.deliver(
            event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), MemoryRefs()
        )
    message = str(caught.value)
    assert "401 INVALID_SESSION_ID" in message and "SALESFORCE_ACCESS_TOKEN" in message
    assert "secret" not in message


def test_lead_mode_writes_leads_tasks_on_them_and_cases_with_supplied_details(
    fake_salesforce, clock, tmp_path
) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    deliver_all(adapter_for(fake, clock, salesforce_mapping=lead_mapping(tmp_path)), refs)
    assert fake.records["Contact"] == {}
    [lead] = fake.records["Lead"].values()
    assert lead["Company"] == "Unknown (Rapport)" and lead["LastName"] == "Example"
    [task] = fake.records["Task"].values()
    assert task["WhoId"] == lead["Id"]
    [case] = fake.records["Case"].values()
    assert "ContactId" not in case and case["SuppliedEmail"] == "alice@example.com"


def test_a_contact_deleted_in_salesforce_is_written_again_with_the_task(
    fake_salesforce, clock
) -> None:
    fake, refs = fake_salesforce, MemoryRefs()
    adapter = adapter_for(fake, clock)
    adapter.deliver(event(EventKind.CONTACT_UPSERT, "contact:1", {"contact": ALICE}), refs)
    with fake.lock:
        fake.records["Contact"].clear()  # deleted by someone in Salesforce
    adapter.deliver(event(EventKind.CONVERSATION_LOGGED, "interaction:42", CONVERSATION), refs)
    [contact] = fake.records["Contact"].values()
    assert next(iter(fake.records["Task"].values()))["WhoId"] == contact["Id"]
    assert refs.stored["contact:1"] == contact["Id"]


def test_the_daily_share_is_kept_and_its_end_is_a_retry(fake_salesforce, clock) -> None:
    adapter = adapter_for(fake_salesforce)
    adapter.limiter = salesforce_limiter(3, clock=clock, sleep=clock.sleep)
    refs = MemoryRefs()
    for n in range(3):
        adapter.deliver(
            event(EventKind.CONTACT_UPSERT, f"contact:{n}", {"contact": ALICE}, contact_id=n), refs
        )
    with pytest.raises(RemoteRetryable, match="SALESFORCE_REQUESTS_PER_DAY") as caught:
        adapter.deliver(
            event(EventKind.CONTACT_UPSERT, "contact:9", {"contact": ALICE}, contact_id=9), refs
        )
    assert caught.value.retry_after is not None and caught.value.retry_after > 86000
    assert len(fake_salesforce.calls) == 3


def test_settings_and_the_mapping_are_checked_when_the_adapter_is_built(
    fake_salesforce, tmp_path
) -> None:
    with pytest.raises(SettingsError, match="SALESFORCE_ACCESS_TOKEN"):
        adapter_for(fake_salesforce, salesforce_access_token="")
    with pytest.raises(SettingsError, match="https"):
        adapter_for(fake_salesforce, salesforce_instance_url="http://example.com")
    broken = tmp_path / "salesforce.yml"
    broken.write_text("contact: {object: Account}\ntasks: {}\ncases: {}\n")
    with pytest.raises(
        SettingsError, match=r"salesforce.yml is not a valid mapping(.|\n)*contact.object"
    ):
        adapter_for(fake_salesforce, salesforce_mapping=broken)
