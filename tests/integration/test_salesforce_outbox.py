"""The whole path to Salesforce: the gateway and the interaction log record outbox events
with their local writes, the worker delivers them with the real adapter to a fake
Salesforce on 127.0.0.1. A conversation lands as a Contact, a completed Task with its
transcript and a Case; an outage, then recovery, and a worker killed after the remote
write still give each record once."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from crm_bridge.db import session_factory
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.models import OutboxEvent
from crm_bridge.outbox import OutboxWorker
from crm_bridge.outbox_admin import status
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.fakes.salesforce_api import FakeSalesforceApi
from tests.integration.test_salesforce_adapter import adapter_for
from tests.unit.test_interaction_log import bot, session_start, user

pytestmark = pytest.mark.integration
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


def a_conversation_with_a_ticket(crm_url: str) -> None:
    """Chloé proves an order over Telegram, complains, and the conversation closes."""
    factory = session_factory(crm_url)
    gateway = SqlCrmGateway(factory, outbox_backend="salesforce")
    log = InteractionLog(factory, outbox_backend="salesforce")
    t0 = time.time() - 600
    sender = "5550123"
    log.record_events(
        [
            *session_start(sender, t0),
            user(sender, t0 + 1, "my parcel arrived damaged", "complaint"),
            bot(sender, t0 + 2, "I'm sorry. I've opened a ticket."),
        ]
    )
    chloe = gateway.verify_order_email("10005", "chloe@example.com")
    ref = ConversationRef(sender_id=sender, channel="telegram", session_started_at=t0)
    gateway.link_identity("telegram", sender, chloe.contact_id, ref)
    gateway.open_ticket(
        ref, TicketCategory.COMPLAINT, "Parcel arrived damaged", "Box crushed.", chloe.contact_id
    )
    log.record_events(session_start(sender, t0 + 3600))  # a new session closes the first


def counted(fake: FakeSalesforceApi) -> list[int]:
    with fake.lock:
        return [len(fake.records[k]) for k in ("Contact", "Task", "Case")]


def run_rounds(factory: sessionmaker, worker: OutboxWorker, rounds: int) -> None:
    """Past the back-off: every event due again, then a round of the worker; ``rounds`` times."""
    for _ in range(rounds):
        with factory() as session, session.begin():
            session.execute(update(OutboxEvent).values(next_attempt_at=LONG_AGO))
        worker.run_once()


def test_a_conversation_lands_as_contact_task_and_case(crm_url: str, fake_salesforce) -> None:
    fake = fake_salesforce
    a_conversation_with_a_ticket(crm_url)
    OutboxWorker(session_factory(crm_url), adapter_for(fake)).run_once()
    [contact] = fake.records["Contact"].values()
    assert contact["Email"] == "chloe@example.com"
    [task] = fake.records["Task"].values()
    assert task["WhoId"] == contact["Id"] and task["Status"] == "Completed"
    assert "my parcel arrived damaged" in task["Description"]
    [case] = fake.records["Case"].values()
    assert case["ContactId"] == contact["Id"]
    assert case["Subject"].endswith("Parcel arrived damaged")
    assert status(session_factory(crm_url), "salesforce").counts.get("delivered") == 3


def test_an_outage_then_recovery_delivers_each_record_once(crm_url: str, fake_salesforce) -> None:
    fake = fake_salesforce
    a_conversation_with_a_ticket(crm_url)
    factory = session_factory(crm_url)
    worker = OutboxWorker(factory, adapter_for(fake))
    fake.fail_next(503, times=50)  # Salesforce is down for the first round
    worker.run_once()
    assert counted(fake) == [0, 0, 0]
    assert status(factory, "salesforce").counts.get("pending") == 3
    with fake.lock:
        fake._faults.clear()  # Salesforce is back
    run_rounds(factory, worker, 3)
    assert counted(fake) == [1, 1, 1]
    assert status(factory, "salesforce").counts.get("delivered") == 3


def test_a_worker_killed_after_the_remote_write_leaves_no_duplicate(
    crm_url: str, fake_salesforce
) -> None:
    fake = fake_salesforce
    a_conversation_with_a_ticket(crm_url)
    factory = session_factory(crm_url)
    adapter = adapter_for(fake)
    killed = OutboxWorker(factory, adapter, lease_seconds=0.5)
    real_deliver = adapter.deliver

    def write_then_die(event, refs):  # the remote write happens; our acknowledgement not
        real_deliver(event, refs)
        raise SystemExit("killed")

    adapter.deliver = write_then_die  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        killed.run_once()
    assert counted(fake) == [1, 0, 0]
    time.sleep(0.6)  # the dead worker's lease expires
    adapter.deliver = real_deliver  # type: ignore[method-assign]
    OutboxWorker(factory, adapter).run_once()
    assert counted(fake) == [1, 1, 1]
