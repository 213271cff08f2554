"""Demo CRM data for the README's conversations and the tests. Idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.identity_links import AGENT, find_identity


@dataclass(frozen=True)
class DemoOrder:
    number: str
    status: str
    placed_days_ago: int
    items: tuple[tuple[str, str, int, int], ...]  # sku, name, quantity, unit price (pence)
    delivered_days_ago: int | None = None
    expected_in_days: int | None = None
    carrier: str | None = None
    tracking: str | None = None


@dataclass(frozen=True)
class DemoContact:
    name: str
    email: str
    phone: str | None
    identities: tuple[tuple[str, str], ...]
    orders: tuple[DemoOrder, ...]


DEMO_CONTACTS = (
    DemoContact(
        "Alice Martin",
        "alice@example.com",
        "+447700900123",
        (("rest", "demo-alice"),),
        (
            DemoOrder(
                "10001",
                "shipped",
                1,
                (("TRS-42", "Trail Running Shoes", 1, 8999), ("MRS-03", "Merino Socks", 2, 1299)),
                expected_in_days=2,
                carrier="DPD",
                tracking="DPD-5521",
            ),
            DemoOrder(
                "10002",
                "delivered",
                9,
                (("RJK-17", "Rain Jacket", 1, 12900),),
                delivered_days_ago=5,
                carrier="Royal Mail",
                tracking="RM-778812",
            ),
        ),
    ),
    DemoContact(
        "Bob Osei",
        "bob@example.com",
        "+447700900456",
        (("rest", "demo-bob"),),
        (
            DemoOrder(
                "10003",
                "processing",
                0,
                (("YGM-01", "Yoga Mat", 1, 3499), ("WBT-05", "Water Bottle", 1, 1599)),
                expected_in_days=4,
            ),
            DemoOrder(
                "10004",
                "delivered",
                45,
                (("CST-09", "Camping Stove", 1, 5999),),
                delivered_days_ago=40,
                carrier="DPD",
                tracking="DPD-1187",
            ),
        ),
    ),
    DemoContact(
        "Chloé Dubois",
        "chloe@example.com",
        None,
        (),
        (
            DemoOrder(
                "10005",
                "shipped",
                2,
                (("ESP-22", "Espresso Machine", 1, 24900),),
                expected_in_days=1,
                carrier="UPS",
                tracking="UPS-1Z999",
            ),
        ),
    ),
)


def seed(url: str, today: date | None = None) -> int:
    """Insert the missing demo contacts, identities and orders; return the contacts added."""
    today = today or datetime.now(timezone.utc).date()
    with unit_of_work(session_factory(url)) as session:
        return sum(_seed_contact(session, demo, today) for demo in DEMO_CONTACTS)


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=timezone.utc)


def _seed_contact(session: Session, demo: DemoContact, today: date) -> int:
    contact = session.execute(
        select(models.Contact).where(models.Contact.email == demo.email)
    ).scalar_one_or_none()
    added = 0
    if contact is None:
        contact = models.Contact(name=demo.name, email=demo.email, phone=demo.phone)
        session.add(contact)
        session.flush()
        added = 1
    for channel, external_id in demo.identities:
        if find_identity(session, channel, external_id) is None:
            # Proven as if staff had checked them: the demo can change data at once.
            session.add(
                models.ChannelIdentity(
                    channel=channel, external_id=external_id, contact_id=contact.id, proof=AGENT
                )
            )
    for demo_order in demo.orders:
        if session.execute(
            select(models.Order.id).where(models.Order.number == demo_order.number)
        ).first():
            continue
        delivered = demo_order.delivered_days_ago
        expected = demo_order.expected_in_days
        order = models.Order(
            number=demo_order.number,
            contact_id=contact.id,
            status=demo_order.status,
            placed_at=_at(today - timedelta(days=demo_order.placed_days_ago)),
            delivered_at=_at(today - timedelta(days=delivered)) if delivered is not None else None,
            expected_delivery=(
                today + timedelta(days=expected)
                if expected is not None
                else (today - timedelta(days=delivered))
                if delivered is not None
                else None
            ),
            carrier=demo_order.carrier,
            tracking_code=demo_order.tracking,
        )
        order.items = [
            models.OrderItem(sku=sku, name=name, quantity=qty, unit_price_cents=price)
            for sku, name, qty, price in demo_order.items
        ]
        session.add(order)
    return added
