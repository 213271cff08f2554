"""The SQL gateway on a real SQLite CRM (tests/integration re-runs these on PostgreSQL)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from crm_bridge import models
from crm_bridge.db import session_factory
from crm_bridge.errors import (
    ContactNotFound,
    CrmUnavailable,
    InvalidInput,
    OrderNotFound,
    ReturnNotAllowed,
)
from crm_bridge.gateway import ConversationRef, TicketCategory
from crm_bridge.rules import ReturnBlock, return_block
from crm_bridge.sql_gateway import SqlCrmGateway


@pytest.fixture
def gateway_url(crm_url: str) -> str:
    return crm_url


@pytest.fixture(params=["sql", "hubspot", "salesforce"])
def gateway(gateway_url: str, request: pytest.FixtureRequest) -> SqlCrmGateway:
    """The same suite for each CRM_BACKEND: with a remote CRM the gateway also records
    outbox events in its transactions, which must change nothing the bot sees (delivery
    to HubSpot is tested in tests/integration/test_hubspot_outbox.py)."""
    backend = None if request.param == "sql" else request.param
    return SqlCrmGateway(session_factory(gateway_url), outbox_backend=backend)


def conversation(sender: str = "web-1") -> ConversationRef:
    return ConversationRef(sender_id=sender, channel="rest", session_started_at=time.time())


def count(url: str, model: object) -> int:
    with session_factory(url)() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_linked_identity_finds_the_contact(gateway: SqlCrmGateway) -> None:
    alice = gateway.find_contact_by_identity("rest", "demo-alice")
    assert alice is not None and alice.email == "alice@example.com"
    assert gateway.find_contact_by_identity("telegram", "demo-alice") is None
    assert gateway.find_contact_by_identity("rest", "someone-else") is None


def test_a_contact_sees_only_their_own_orders(gateway: SqlCrmGateway) -> None:
    alice = gateway.find_contact_by_identity("rest", "demo-alice")
    assert alice is not None
    order = gateway.get_order_for_contact(alice.id, "10001")
    assert order.carrier == "DPD" and order.tracking_code == "DPD-5521"
    assert [item.name for item in order.items] == ["Trail Running Shoes", "Merino Socks"]
    assert order.total_cents == 8999 + 2 * 1299
    assert gateway.get_order_for_contact(alice.id, "#10001").number == "10001"
    with pytest.raises(OrderNotFound):
        gateway.get_order_for_contact(alice.id, "10003")  # Bob's
    with pytest.raises(OrderNotFound):
        gateway.get_order_for_contact(alice.id, "99999")
    with pytest.raises(InvalidInput) as error:
        gateway.get_order_for_contact(alice.id, "12")
    assert error.value.field == "order_number"


def test_order_and_email_must_match(gateway: SqlCrmGateway) -> None:
    assert gateway.verify_order_email("10005", "  Chloe@Example.com ").number == "10005"
    with pytest.raises(OrderNotFound):
        gateway.verify_order_email("10005", "alice@example.com")
    with pytest.raises(OrderNotFound):
        gateway.verify_order_email("99999", "chloe@example.com")
    with pytest.raises(InvalidInput):
        gateway.verify_order_email("10005", "not-an-email")


def test_linking_an_identity_attributes_the_conversation(
    gateway: SqlCrmGateway, gateway_url: str
) -> None:
    chloe = gateway.get_contact(gateway.verify_order_email("10005", "chloe@example.com").contact_id)
    ref = conversation("web-chloe")
    gateway.link_identity("rest", "web-chloe", chloe.id, conversation=ref)
    gateway.link_identity("rest", "web-chloe", chloe.id, conversation=ref)  # idempotent
    assert gateway.find_contact_by_identity("rest", "web-chloe") == chloe
    with session_factory(gateway_url)() as session:
        interactions = session.execute(select(models.Interaction)).scalars().all()
        assert [(i.sender_id, i.contact_id) for i in interactions] == [("web-chloe", chloe.id)]
    with pytest.raises(ContactNotFound):
        gateway.link_identity("rest", "web-x", 999_999)


def test_tickets_link_to_the_conversation_and_contact(
    gateway: SqlCrmGateway, gateway_url: str
) -> None:
    bob = gateway.find_contact_by_identity("rest", "demo-bob")
    assert bob is not None
    ref = conversation("demo-bob")
    first = gateway.open_ticket(
        ref, TicketCategory.CANCELLATION, "Cancel order 10003", "please", bob.id, "10003"
    )
    second = gateway.open_ticket(ref, TicketCategory.COMPLAINT, "Rude courier", "details")
    assert first.reference == f"T-{first.id:06d}" and first.category is TicketCategory.CANCELLATION
    with session_factory(gateway_url)() as session:
        tickets = session.execute(select(models.Ticket).order_by(models.Ticket.id)).scalars().all()
        assert len({t.interaction_id for t in tickets}) == 1
        assert tickets[0].order is not None and tickets[0].order.number == "10003"
        interaction = session.get(models.Interaction, tickets[0].interaction_id)
        assert interaction is not None and interaction.contact_id == bob.id
    assert second.id != first.id


def test_a_ticket_never_attaches_another_customers_order(
    gateway: SqlCrmGateway, gateway_url: str
) -> None:
    alice = gateway.find_contact_by_identity("rest", "demo-alice")
    assert alice is not None
    gateway.open_ticket(conversation(), TicketCategory.DELIVERY, "Late", "", alice.id, "10003")
    with session_factory(gateway_url)() as session:
        assert session.execute(select(models.Ticket.order_id)).scalar_one() is None


def test_returns_need_the_customers_own_order(gateway: SqlCrmGateway, gateway_url: str) -> None:
    alice = gateway.find_contact_by_identity("rest", "demo-alice")
    assert alice is not None
    created = gateway.create_return(conversation(), alice.id, "10002", "Rain Jacket", "Too small")
    assert created.reference.startswith("R-") and created.status == "requested"
    with pytest.raises(OrderNotFound):
        gateway.create_return(conversation(), alice.id, "10004", "Camping Stove", "Broken")
    with pytest.raises(InvalidInput) as error:
        gateway.create_return(conversation(), alice.id, "10002", "Rain Jacket", "   ")
    assert error.value.field == "reason"
    assert count(gateway_url, models.ReturnRequest) == 1


def test_contact_details_are_validated_and_normalised(gateway: SqlCrmGateway) -> None:
    bob = gateway.find_contact_by_identity("rest", "demo-bob")
    assert bob is not None
    updated = gateway.update_contact_details(bob.id, email=" Bob.New@Example.org ")
    assert updated.email == "bob.new@example.org"
    # The "(0)" of a written UK number is the national prefix, not a digit of it.
    updated = gateway.update_contact_details(bob.id, phone="+44 (0)7700-900 789")
    assert updated.phone == "+447700900789"
    for field, kwargs in (("email", {"email": "bob@"}), ("phone", {"phone": "12ab"})):
        with pytest.raises(InvalidInput) as error:
            gateway.update_contact_details(bob.id, **kwargs)
        assert error.value.field == field
    with pytest.raises(InvalidInput):  # another contact's address
        gateway.update_contact_details(bob.id, email="alice@example.com")
    assert gateway.get_contact(bob.id).email == "bob.new@example.org"


def test_a_failed_operation_writes_nothing(gateway: SqlCrmGateway, gateway_url: str) -> None:
    before = count(gateway_url, models.Interaction)
    with pytest.raises(OrderNotFound):
        gateway.create_return(conversation("web-9"), 1, "10004", "Camping Stove", "Broken")
    assert count(gateway_url, models.Interaction) == before


def test_an_unreachable_database_is_crm_unavailable(tmp_path) -> None:
    gateway = SqlCrmGateway.from_url(f"sqlite:///{tmp_path}/missing-dir/../nope/x/crm.db")
    with pytest.raises(CrmUnavailable) as error:
        gateway.find_contact_by_identity("rest", "demo-alice")
    assert "sqlite" not in str(error.value).lower()
    dead_postgres = SqlCrmGateway.from_url("postgresql+psycopg2://postgres@127.0.0.1:1/none")
    with pytest.raises(CrmUnavailable):
        dead_postgres.list_orders(1)


def test_seeding_twice_changes_nothing(gateway_url: str) -> None:
    from crm_bridge.seed import seed

    before = [count(gateway_url, m) for m in (models.Contact, models.Order, models.OrderItem)]
    assert seed(gateway_url) == 0
    assert [
        count(gateway_url, m) for m in (models.Contact, models.Order, models.OrderItem)
    ] == before


def test_the_gateway_enforces_the_return_rules(gateway: SqlCrmGateway, gateway_url: str) -> None:
    """Every caller gets the shop's rules, not only the assistant's return form."""
    alice = gateway.find_contact_by_identity("rest", "demo-alice")
    bob = gateway.find_contact_by_identity("rest", "demo-bob")
    assert alice is not None and bob is not None
    cases = ((alice.id, "10001", "not_delivered"), (bob.id, "10004", "past_window"))
    for contact_id, number, block in cases:
        with pytest.raises(ReturnNotAllowed) as refused:
            gateway.create_return(conversation(), contact_id, number, "Anything", "Broken")
        assert (refused.value.order_number, refused.value.block) == (number, block)
    assert count(gateway_url, models.ReturnRequest) == 0


@pytest.mark.parametrize(
    ("status", "days_ago", "block"),
    [
        ("delivered", 0, None),
        ("delivered", 30, None),
        ("delivered", 31, ReturnBlock.PAST_WINDOW),
        ("shipped", None, ReturnBlock.NOT_DELIVERED),
        ("delivered", None, ReturnBlock.NOT_DELIVERED),
    ],
)
def test_the_return_window(status: str, days_ago: int | None, block: ReturnBlock | None) -> None:
    on = date(2026, 12, 3)
    delivered = None if days_ago is None else datetime(2026, 12, 3, 9, tzinfo=timezone.utc)
    if delivered is not None and days_ago is not None:
        delivered -= timedelta(days=days_ago)
    assert return_block(status, delivered, on) == block
