"""What we know about a customer (summary and full export) and the single-use links that
download the export, on a real SQLite CRM; the web chat's download route answers once."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.web import download_export
from crm_bridge.consent import ConsentBook
from crm_bridge.data_export import contact_export, contact_summary
from crm_bridge.db import session_factory
from crm_bridge.erasure import erase_contact
from crm_bridge.errors import ContactNotFound, InvalidInput
from crm_bridge.export_links import ExportLinks, LinkGone
from crm_bridge.link_tokens import LinkTokens, identity_secret
from crm_bridge.settings import load as load_crm_settings
from tests.unit.test_erasure import SECRET, seed_customer


def test_the_export_holds_the_customer_and_nobody_else(crm_url: str, tmp_path: Path) -> None:
    customer, other = seed_customer(crm_url, tmp_path), seed_customer(crm_url, tmp_path)
    export = contact_export(session_factory(crm_url), customer.contact_id)

    text = json.dumps(export)  # JSON-serialisable as it is
    for needle in customer.needles:
        assert needle in text
    for needle in other.needles:
        assert needle not in text
    assert export["contact"]["email"] == customer.email
    assert {i["channel"] for i in export["identities"]} == {"rest", "telegram"}
    [order] = export["orders"]
    assert order["items"] == [
        {"sku": "JKT", "name": "Rain Jacket", "quantity": 1, "unit_price_cents": 1}
    ]
    [conversation] = export["conversations"]
    assert [m["direction"] for m in conversation["messages"]] == ["inbound", "outbound", "inbound"]
    assert export["tickets"][0]["reference"].startswith("T-")
    assert export["returns"][0]["order"] == order["number"]
    assert export["consents"][0]["topic"] == "offers" and export["consents"][0]["granted"]
    assert export["notifications"][0]["reference"].endswith(":shipped")


def test_the_summary_counts_and_states_consent_per_topic(crm_url: str, tmp_path: Path) -> None:
    customer = seed_customer(crm_url, tmp_path)
    factory = session_factory(crm_url)
    ConsentBook(factory).record(customer.contact_id, "newsletter", "telegram", True, "Yes")
    summary = contact_summary(factory, customer.contact_id)

    assert (summary.email, summary.phone) == (customer.email, customer.phone)
    assert {(c.channel, c.proof) for c in summary.channels} == {
        ("rest", "link_token"),
        ("telegram", "order_email"),
    }
    states = {s.topic: s for s in summary.consents}
    assert states["order_updates"].everywhere and not states["order_updates"].decided
    assert states["offers"].everywhere and states["offers"].decided
    assert not states["newsletter"].everywhere
    assert states["newsletter"].per_channel == (("telegram", True),)
    assert (summary.conversations, summary.orders, summary.tickets, summary.returns) == (1, 1, 1, 1)


def test_an_erased_contact_has_nothing_to_show(crm_url: str, tmp_path: Path) -> None:
    customer = seed_customer(crm_url, tmp_path)
    factory = session_factory(crm_url)
    asyncio.run(erase_contact(factory, customer.contact_id, "tester", SECRET))
    with pytest.raises(ContactNotFound):
        contact_summary(factory, customer.contact_id)
    with pytest.raises(ContactNotFound):
        contact_export(factory, customer.contact_id)


def test_an_export_link_works_once_and_not_after_expiry(crm_url: str) -> None:
    factory = session_factory(crm_url)
    links = ExportLinks(factory, SECRET)
    token = links.issue(1)
    assert links.redeem(token) == 1
    with pytest.raises(LinkGone):
        links.redeem(token)

    later = datetime.now(timezone.utc) + timedelta(minutes=31)
    stale = links.issue(1)
    with pytest.raises(LinkGone):
        ExportLinks(factory, SECRET, now=lambda: later).redeem(stale)

    forged = token[:22] + "A" * 22
    with pytest.raises(InvalidInput):
        links.redeem(forged)
    with pytest.raises(InvalidInput):  # a deep link's token is no export token
        links.redeem(LinkTokens(factory, SECRET).issue(1))
    assert links.revoke(1) == 2


def test_the_download_route_answers_once(
    crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    monkeypatch.setenv("RAPPORT_VAR_DIR", str(tmp_path / "var"))
    customer = seed_customer(crm_url, tmp_path)
    secret = identity_secret(load_crm_settings())
    token = ExportLinks(session_factory(crm_url), secret).issue(customer.contact_id)

    first = asyncio.run(download_export(token))
    assert first.status == 200
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Content-Disposition"].startswith("attachment")
    assert json.loads(first.body or b"")["contact"]["email"] == customer.email
    assert asyncio.run(download_export(token)).status == 410
    assert asyncio.run(download_export("not-a-token")).status == 404
