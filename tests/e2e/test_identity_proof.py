"""Proven identity end to end: an emailed code typed in the chat, a Telegram deep link,
and the shop's signed login in the web chat page (real Chromium), against real Rasa and
action servers; the CRM then holds a proven link, and only then are data changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm_bridge import settings as crm_settings
from crm_bridge.db import session_factory
from crm_bridge.link_tokens import LinkTokens, identity_secret
from crm_bridge.shop_tokens import make_shop_token
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.e2e.conftest import SHOP_TOKEN_SECRET, BotServers
from tests.e2e.test_conversations import new_sender, reply_text, talk
from tests.e2e.test_telegram import message_update, new_id, post
from tests.e2e.test_web_chat import browser_page  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

CODE = re.compile(r"Your Rapport code is (\d{6})")


def latest_code(servers: BotServers, to: str) -> str:
    """The newest code mailed to ``to`` (the embedded default writes mail to var/outbox)."""
    outbox = Path(servers.env["RAPPORT_VAR_DIR"]) / "outbox"
    mails = sorted(outbox.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)
    for path in reversed(mails):
        text = path.read_text()
        if re.search(rf"^To: {re.escape(to)}$", text, re.MULTILINE):
            found = CODE.search(text)
            assert found is not None
            return found.group(1)
    raise AssertionError(f"no code was mailed to {to}")


def gateway(servers: BotServers) -> SqlCrmGateway:
    return SqlCrmGateway.from_url(servers.crm_url)


def test_an_emailed_code_proves_the_customer_before_a_cancellation(
    bot_servers: BotServers,
) -> None:
    sender = new_sender("code")
    ask_email, ask_code = talk(bot_servers, sender, "I want to cancel my order", "bob@example.com")
    assert "email address on your account" in reply_text(ask_email)
    assert "6-digit code" in reply_text(ask_code)
    assert gateway(bot_servers).find_contact_by_identity("rest", sender) is None

    wrong = talk(bot_servers, sender, "000001")[0]
    assert "not right" in reply_text(wrong)
    code = latest_code(bot_servers, "bob@example.com")
    confirmed, cancelled = talk(bot_servers, sender, code, "10003")
    assert "Thanks, Bob: that's confirmed." in reply_text(confirmed)
    assert "order number" in reply_text(confirmed).lower()
    assert "cancel order 10003" in reply_text(cancelled)
    bob = gateway(bot_servers).find_contact_by_identity("rest", sender, proven=True)
    assert bob is not None and bob.email == "bob@example.com"


def test_an_order_and_its_email_read_a_status_but_change_nothing(
    bot_servers: BotServers,
) -> None:
    sender = new_sender("weak")
    replies = talk(
        bot_servers, sender, "where is my order?", "10005", "chloe@example.com", "thanks"
    )
    assert "10005" in reply_text(replies[2])
    assert gateway(bot_servers).find_contact_by_identity("rest", sender) is not None
    asked = talk(bot_servers, sender, "I want to change my email")[0]
    assert "email address on your account" in reply_text(asked)  # a code first
    assert gateway(bot_servers).find_contact_by_identity("rest", sender, proven=True) is None


def test_a_telegram_deep_link_links_the_chat_once(bot_servers: BotServers, fake_telegram) -> None:
    settings = crm_settings.load({"RAPPORT_VAR_DIR": bot_servers.env["RAPPORT_VAR_DIR"]})
    bob = gateway(bot_servers).find_contact_by_email("bob@example.com")
    assert bob is not None
    token = LinkTokens(session_factory(bot_servers.crm_url), identity_secret(settings)).issue(
        bob.id
    )
    chat = new_id()
    assert post(bot_servers, message_update(chat, f"/start {token}")).status_code == 200
    [welcome] = fake_telegram.sent_to(chat, 1)
    assert welcome.params["text"].startswith("Hi Bob, this chat is now linked")
    linked = gateway(bot_servers).find_contact_by_identity("telegram", str(chat), proven=True)
    assert linked is not None and linked.id == bob.id

    other = new_id()
    post(bot_servers, message_update(other, f"/start {token}"))
    [refused] = fake_telegram.sent_to(other, 1)
    assert refused.params["text"] == "This link was already used."
    assert gateway(bot_servers).find_contact_by_identity("telegram", str(other)) is None


def test_the_shops_login_links_the_web_chat(bot_servers: BotServers, browser_page) -> None:  # noqa: F811
    page = browser_page
    token = make_shop_token("alice@example.com", SHOP_TOKEN_SECRET)
    page.goto(f"{bot_servers.rasa_url}/chat/?shop_token={token}")
    page.get_by_text("Hi Alice, this chat is now linked to your account").wait_for()
    assert "shop_token" not in page.url  # taken out of the address bar
    sender = page.evaluate("localStorage.getItem('rapport.chat.sender')")
    alice = gateway(bot_servers).find_contact_by_identity("web", sender, proven=True)
    assert alice is not None and alice.email == "alice@example.com"

    forged = make_shop_token("bob@example.com", "not-the-shops-secret-0123456789abcdef")
    page.evaluate("localStorage.clear()")
    page.goto(f"{bot_servers.rasa_url}/chat/?shop_token={forged}")
    page.get_by_text("signature does not match").wait_for()
    sender = page.evaluate("localStorage.getItem('rapport.chat.sender')")
    assert gateway(bot_servers).find_contact_by_identity("web", sender) is None
