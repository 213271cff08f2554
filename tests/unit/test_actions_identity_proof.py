"""Proven identity in chat: forms that change data ask for an emailed code first; deep
links, the shop's login token and a Telegram phone contact prove a customer by themselves.
Real Trackers, a real (SQLite) CRM, codes read from the real outbox folder."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.cancel_order import ActionCancelOrder, ValidateCancelOrderForm
from actions.contact_update import ActionUpdateContact
from actions.crm import get_gateway, reset_gateway
from actions.identity_proof import NOTHING_TO_CHECK, ActionProveIdentity
from actions.order_status import ValidateOrderStatusForm
from actions.returns import ValidateReturnForm
from crm_bridge import settings as crm_settings
from crm_bridge.db import session_factory
from crm_bridge.link_tokens import LinkTokens, identity_secret
from crm_bridge.shop_tokens import make_shop_token
from tests.unit.conftest import make_tracker, slot_events, texts

SHOP_SECRET = "shop-secret-for-tests-0123456789abcdef"
CODE = re.compile(r"Your Rapport code is (\d{6})")


@pytest.fixture(autouse=True)
def proofs_crm(crm_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The seeded CRM, codes written to this test's outbox, a shop secret."""
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    monkeypatch.setenv("RAPPORT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SHOP_TOKEN_SECRET", SHOP_SECRET)
    reset_gateway()
    yield tmp_path / "var" / "outbox"
    reset_gateway()


def mailed_codes(outbox: Path) -> list[tuple[str, str]]:
    """(recipient, code) of every mail in the outbox, oldest first."""
    found = []
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        text = path.read_text()
        to = re.search(r"^To: (.+)$", text, re.MULTILINE)
        code = CODE.search(text)
        assert to and code, "every mail is a code mail"
        found.append((to.group(1).strip(), code.group(1)))
    return found


def form_tracker(sender: str, slots: dict[str, Any], form: str, **kwargs: Any) -> Tracker:
    return make_tracker(
        sender=sender, text="x", intent="inform", slots=slots, active_loop=form, **kwargs
    )


async def validate(
    validator: Any, sender: str, slots: dict[str, Any], domain: dict, form: str, **kwargs: Any
) -> tuple[dict[str, Any], CollectingDispatcher]:
    dispatcher = CollectingDispatcher()
    events = await validator.run(dispatcher, form_tracker(sender, slots, form, **kwargs), domain)
    return slot_events(events), dispatcher


async def prove_by_code(sender: str, email: str, domain: dict, outbox: Path) -> dict[str, Any]:
    await validate(ValidateCancelOrderForm(), sender, {"proof_email": email}, domain, "c")
    code = mailed_codes(outbox)[-1][1]
    slots, _ = await validate(
        ValidateCancelOrderForm(),
        sender,
        {"proof_code": code},
        domain,
        "cancel_order_form",
        prior_slots={"proof_email": email},
    )
    return slots


async def required(validator: Any, sender: str, domain: dict, form: str) -> list[str]:
    slots = domain["forms"][form]["required_slots"]
    tracker = form_tracker(sender, {}, form)
    return list(await validator.required_slots(slots, CollectingDispatcher(), tracker, domain))


async def test_forms_that_change_data_ask_for_a_code_unless_proven(domain: dict) -> None:
    # web-chloe knows her order's number and email: enough to read, not to change.
    chloe = get_gateway().find_contact_by_email("chloe@example.com")
    assert chloe is not None
    get_gateway().link_identity("rest", "web-chloe", chloe.id)
    assert await required(ValidateCancelOrderForm(), "web-chloe", domain, "cancel_order_form") == [
        "proof_email",
        "proof_code",
        "order_number",
    ]
    assert (await required(ValidateReturnForm(), "web-new", domain, "return_form"))[:2] == [
        "proof_email",
        "proof_code",
    ]
    assert await required(ValidateOrderStatusForm(), "web-chloe", domain, "order_status_form") == [
        "order_number"
    ]
    # demo-alice's link was proven (the demo seed: as if staff had checked it).
    assert await required(ValidateCancelOrderForm(), "demo-alice", domain, "cancel_order_form") == [
        "order_number"
    ]


async def test_the_right_code_proves_the_customer(domain: dict, proofs_crm: Path) -> None:
    slots, dispatcher = await validate(
        ValidateCancelOrderForm(),
        "web-9",
        {"proof_email": " Chloe@Example.com "},
        domain,
        "cancel_order_form",
    )
    assert slots["proof_email"] == "chloe@example.com"
    assert "I've just sent a 6-digit code" in texts(dispatcher)[0]
    [(recipient, code)] = mailed_codes(proofs_crm)
    assert recipient == "chloe@example.com"

    slots, dispatcher = await validate(
        ValidateCancelOrderForm(),
        "web-9",
        {"proof_code": f"{code[:3]} {code[3:]}"},
        domain,
        "cancel_order_form",
    )
    assert slots["proof_code"] == "proven"  # never the code itself
    assert texts(dispatcher) == ["Thanks, Chloé: that's confirmed."]
    proven = get_gateway().find_contact_by_identity("rest", "web-9", proven=True)
    assert proven is not None and proven.email == "chloe@example.com"


async def test_an_unknown_address_hears_the_same_and_gets_nothing(
    domain: dict, proofs_crm: Path
) -> None:
    _, known = await validate(
        ValidateCancelOrderForm(), "web-1", {"proof_email": "bob@example.com"}, domain, "c"
    )
    _, unknown = await validate(
        ValidateCancelOrderForm(), "web-2", {"proof_email": "nobody@example.com"}, domain, "c"
    )
    assert texts(known)[0].replace("bob", "X") == texts(unknown)[0].replace("nobody", "X")
    assert [to for to, _ in mailed_codes(proofs_crm)] == ["bob@example.com"]


async def test_a_wrong_code_is_counted_and_the_right_one_still_works(
    domain: dict, proofs_crm: Path
) -> None:
    await validate(
        ValidateCancelOrderForm(), "web-3", {"proof_email": "bob@example.com"}, domain, "c"
    )
    code = mailed_codes(proofs_crm)[-1][1]
    wrong = "000000" if code != "000000" else "111111"
    slots, dispatcher = await validate(
        ValidateCancelOrderForm(), "web-3", {"proof_code": wrong}, domain, "c"
    )
    assert slots["proof_code"] is None and "proof_email" not in slots  # the same code again
    assert texts(dispatcher) == ["That code is not right; 4 tries left."]
    assert get_gateway().find_contact_by_identity("rest", "web-3") is None

    slots, _ = await validate(
        ValidateCancelOrderForm(), "web-3", {"proof_code": code}, domain, "cancel_order_form"
    )
    assert slots["proof_code"] == "proven" and slots["requested_slot"] == "order_number"
    # Proven now: the form asks no more codes (a used code is refused by OneTimeCodes,
    # tests/unit/test_one_time_codes.py).
    assert await required(ValidateCancelOrderForm(), "web-3", domain, "cancel_order_form") == [
        "order_number"
    ]


async def test_five_wrong_codes_lock_and_end_the_flow(domain: dict, proofs_crm: Path) -> None:
    await validate(
        ValidateCancelOrderForm(), "web-4", {"proof_email": "bob@example.com"}, domain, "c"
    )
    code = mailed_codes(proofs_crm)[-1][1]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        await validate(ValidateCancelOrderForm(), "web-4", {"proof_code": wrong}, domain, "c")
    slots, dispatcher = await validate(
        ValidateCancelOrderForm(), "web-4", {"proof_code": wrong}, domain, "c"
    )
    assert slots["requested_slot"] is None  # the flow ends
    assert "Too many wrong codes" in texts(dispatcher)[0]
    slots, dispatcher = await validate(
        ValidateCancelOrderForm(), "web-4", {"proof_code": code}, domain, "c"
    )
    assert "Too many wrong codes" in texts(dispatcher)[0]  # even the right one, for now
    assert get_gateway().find_contact_by_identity("rest", "web-4") is None


async def test_text_that_is_no_code_starts_over(domain: dict) -> None:
    slots, dispatcher = await validate(
        ValidateCancelOrderForm(), "web-5", {"proof_code": "I never got it"}, domain, "c"
    )
    assert slots["proof_email"] is None and slots["proof_code"] is None
    assert slots["requested_slot"] == "proof_email"
    assert "send a new one" in texts(dispatcher)[0]


async def test_another_customers_order_named_before_the_proof_is_dropped(
    domain: dict, proofs_crm: Path
) -> None:
    # "cancel order 10003" (Bob's) from someone who then proves to be Chloé.
    await validate(
        ValidateCancelOrderForm(), "web-6", {"proof_email": "chloe@example.com"}, domain, "c"
    )
    code = mailed_codes(proofs_crm)[-1][1]
    slots, dispatcher = await validate(
        ValidateCancelOrderForm(),
        "web-6",
        {"proof_code": code},
        domain,
        "cancel_order_form",
        prior_slots={"order_number": "10003"},
    )
    assert slots["proof_code"] == "proven" and slots["order_number"] is None
    assert "can't find an order 10003 on your account" in texts(dispatcher)[1]
    # And the action itself checks ownership again: Bob's order stays Bob's.
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(sender="web-6", slots={"order_number": "10003"})
    ActionCancelOrder().run(dispatcher, tracker, domain)
    assert texts(dispatcher) == ["Sorry, I couldn't find that order."]


async def test_an_order_and_its_email_cannot_change_contact_details(domain: dict) -> None:
    chloe = get_gateway().find_contact_by_email("chloe@example.com")
    assert chloe is not None
    get_gateway().link_identity("rest", "web-7", chloe.id)  # the weak level
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(sender="web-7", slots={"new_contact_value": "evil@example.com"})
    ActionUpdateContact().run(dispatcher, tracker, domain)
    assert "confirm who you are" in texts(dispatcher)[0]
    assert get_gateway().get_contact(chloe.id).email == "chloe@example.com"


def prove(sender: str, metadata: dict[str, Any], domain: dict, channel: str = "rest") -> str:
    tracker = make_tracker(
        sender=sender, text="/prove_identity", intent="prove_identity", channel=channel
    )
    tracker.latest_message["metadata"] = metadata
    dispatcher = CollectingDispatcher()
    ActionProveIdentity().run(dispatcher, tracker, domain)
    [text] = texts(dispatcher)
    return text


def link_tokens() -> LinkTokens:
    settings = crm_settings.load()
    return LinkTokens(session_factory(settings.database_url), identity_secret(settings))


def test_a_deep_link_proves_once(domain: dict) -> None:
    bob = get_gateway().find_contact_by_email("bob@example.com")
    assert bob is not None
    token = link_tokens().issue(bob.id)
    assert prove("tg-1", {"link_token": token}, domain, "telegram").startswith("Hi Bob,")
    linked = get_gateway().find_contact_by_identity("telegram", "tg-1", proven=True)
    assert linked is not None and linked.id == bob.id
    assert prove("tg-2", {"link_token": token}, domain, "telegram") == "This link was already used."
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert prove("tg-3", {"link_token": forged}, domain, "telegram") == "This link is not valid."
    assert get_gateway().find_contact_by_identity("telegram", "tg-3") is None


def test_an_expired_deep_link_proves_nothing(domain: dict) -> None:
    bob = get_gateway().find_contact_by_email("bob@example.com")
    assert bob is not None
    tokens = link_tokens()
    token = tokens.issue(bob.id, ttl=timedelta(seconds=1))
    time.sleep(1.1)
    assert (
        prove("web-8", {"link_token": token}, domain) == "This link has expired; ask for a new one."
    )


def test_the_shops_signed_login_proves_the_web_visitor(domain: dict) -> None:
    token = make_shop_token("alice@example.com", SHOP_SECRET)
    assert prove("web-10", {"shop_token": token}, domain).startswith("Hi Alice,")
    assert get_gateway().find_contact_by_identity("rest", "web-10", proven=True) is not None

    forged = make_shop_token("bob@example.com", "another-secret-0123456789abcdefghij")
    assert "signature does not match" in prove("web-11", {"shop_token": forged}, domain)
    expired = make_shop_token("bob@example.com", SHOP_SECRET, now=time.time() - 3600)
    assert "expired" in prove("web-12", {"shop_token": expired}, domain)
    assert get_gateway().find_contact_by_identity("rest", "web-11") is None
    assert get_gateway().find_contact_by_identity("rest", "web-12") is None


def test_an_own_telegram_contact_proves_the_matching_customer(domain: dict) -> None:
    own = {"telegram": {"shared_contact": {"phone": "447700900456", "user_id": 5, "own": True}}}
    assert prove("tg-5", own, domain, "telegram").startswith("Hi Bob,")
    someone_elses = {
        "telegram": {"shared_contact": {"phone": "447700900123", "user_id": 9, "own": False}}
    }
    assert "your own contact" in prove("tg-6", someone_elses, domain, "telegram")
    # The same claim over REST is only a REST caller's say-so.
    assert prove("tg-7", own, domain, "rest") == NOTHING_TO_CHECK
    assert get_gateway().find_contact_by_identity("telegram", "tg-6") is None
    assert get_gateway().find_contact_by_identity("rest", "tg-7") is None
