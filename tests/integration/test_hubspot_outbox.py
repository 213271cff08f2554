"""The whole path to HubSpot: the gateway and the interaction log record outbox events
with their local writes, the worker delivers them with the real adapter to a fake HubSpot
on 127.0.0.1. A conversation lands as a contact, a note with its transcript and a ticket;
an outage, then recovery, and a worker killed mid-delivery still give each record once."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import update

from crm_bridge.db import session_factory
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.models import OutboxEvent
from crm_bridge.outbox import OutboxWorker
from crm_bridge.outbox_admin import status
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.fakes.hubspot_api import FakeHubSpotApi
from tests.integration.test_hubspot_adapter import adapter_for
from tests.unit.test_interaction_log import bot, session_start, user

pytestmark = pytest.mark.integration
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


def a_conversation_with_a_ticket(crm_url: str) -> None:
    """Chloé proves an order over Telegram, complains, and the conversation closes."""
    factory = session_factory(crm_url)
    gateway = SqlCrmGateway(factory, outbox_backend="hubspot")
    log = InteractionLog(factory, outbox_backend="hubspot")
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


def notes(fake: FakeHubSpotApi) -> list[dict]:
    return list(fake.objects["notes"].values())


def test_a_conversation_lands_as_contact_note_and_ticket(crm_url: str, fake) -> None:
    a_conversation_with_a_ticket(crm_url)
    worker = OutboxWorker(session_factory(crm_url), adapter_for(fake))
    worker.run_once()
    [contact] = fake.objects["contacts"].values()
    assert contact["properties"]["email"] == "chloe@example.com"
    [note] = notes(fake)
    assert note["contacts"] == [contact["id"]]
    assert "my parcel arrived damaged" in note["properties"]["hs_note_body"]
    [ticket] = fake.objects["tickets"].values()
    assert ticket["contacts"] == [contact["id"]]
    assert ticket["properties"]["subject"].endswith("Parcel arrived damaged")
    assert status(session_factory(crm_url), "hubspot").counts.get("delivered") == 3


def test_an_outage_then_recovery_delivers_each_record_once(crm_url: str, fake) -> None:
    a_conversation_with_a_ticket(crm_url)
    factory = session_factory(crm_url)
    worker = OutboxWorker(factory, adapter_for(fake))
    fake.fail_next(500, times=50)  # HubSpot is down for the first round
    worker.run_once()
    assert fake.objects["contacts"] == {} and notes(fake) == []
    assert status(factory, "hubspot").counts.get("pending") == 3
    with fake.lock:
        fake._faults.clear()  # HubSpot is back
    for _ in range(3):  # past the back-off: make every event due again
        with factory() as session, session.begin():
            session.execute(update(OutboxEvent).values(next_attempt_at=LONG_AGO))
        worker.run_once()
    assert len(fake.objects["contacts"]) == 1 and len(notes(fake)) == 1
    assert len(fake.objects["tickets"]) == 1


def test_a_worker_killed_after_the_remote_write_leaves_no_duplicate(crm_url: str, fake) -> None:
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
    assert len(fake.objects["contacts"]) == 1
    time.sleep(0.6)  # the dead worker's lease expires
    adapter.deliver = real_deliver  # type: ignore[method-assign]
    OutboxWorker(factory, adapter).run_once()
    assert len(fake.objects["contacts"]) == 1
    assert len(notes(fake)) == 1 and len(fake.objects["tickets"]) == 1
