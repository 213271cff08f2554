"""The web chat page in a real headless Chromium: type, read the answer, press a
button, reload and keep the conversation; no request leaves the server's origin. An agent
takes the conversation over through the agent API and their messages reach the page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from crm_bridge.handoff import HandoffDesk
from tests.e2e.conftest import BotServers, agent_api, listed_handoff
from tests.e2e.test_conversations import inbound, interactions_of

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's docs advise: no background networking, so Chromium itself makes no
# outside requests either.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page(tmp_path) -> Iterator:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        context.close()
        browser.close()


def test_the_page_is_self_contained_and_locked_down(bot_servers: BotServers) -> None:
    response = requests.get(f"{bot_servers.rasa_url}/chat/", timeout=10)
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "http://" not in response.text and "https://" not in response.text
    for asset in ("chat.js", "chat.css"):
        assert requests.get(f"{bot_servers.rasa_url}/chat/{asset}", timeout=10).status_code == 200
    assert (
        requests.get(f"{bot_servers.rasa_url}/chat/../../etc/passwd", timeout=10).status_code == 404
    )


def test_a_customer_chats_in_the_browser(bot_servers: BotServers, browser_page, tmp_path) -> None:
    page = browser_page
    origin = bot_servers.rasa_url
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{origin}/chat/")
    page.get_by_text("How can I help you today?").wait_for()

    # A button from the greeting, then typed answers.
    page.get_by_role("button", name="Where is my order?").click()
    page.get_by_text("What's your order number?").wait_for()
    page.get_by_label("Your message").fill("10005")
    page.keyboard.press("Enter")
    page.get_by_text("what's the email address on that order?").wait_for()
    page.get_by_label("Your message").fill("chloe@example.com")
    page.get_by_role("button", name="Send").click()
    page.get_by_text("UPS-1Z999").wait_for()
    page.screenshot(path=str(tmp_path / "web-chat.png"))

    sender = page.evaluate("localStorage.getItem('rapport.chat.sender')")
    assert sender and sender.startswith("web-")

    # A reload keeps the conversation, and it carries on.
    page.reload()
    page.get_by_text("UPS-1Z999").wait_for()
    assert page.evaluate("localStorage.getItem('rapport.chat.sender')") == sender
    page.get_by_label("Your message").fill("thank you!")
    page.keyboard.press("Enter")
    page.get_by_text("You're welcome!").wait_for()

    assert requested and all(url.startswith(origin) for url in requested), requested
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 5
    )
    assert interaction["channel"] == "web"
    assert interaction["contact"] == "chloe@example.com"
    # The page greets on first load; a pressed button sends its payload.
    assert inbound(interaction) == [
        "/greet",
        "/order_status",
        "10005",
        "chloe@example.com",
        "thank you!",
    ]


def test_the_inbox_refuses_a_missing_or_oversized_sender(bot_servers: BotServers) -> None:
    inbox = f"{bot_servers.rasa_url}/chat/inbox"
    for params in ({}, {"sender": " "}, {"sender": "x" * 129}):
        response = requests.get(inbox, params=params, timeout=10)
        assert response.status_code == 400, params
        assert "'sender'" in response.json()["error"]


def test_an_agent_answers_a_web_chat_customer(
    bot_servers: BotServers, browser_page, tmp_path
) -> None:
    page = browser_page
    origin = bot_servers.rasa_url
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{origin}/chat/")
    page.get_by_text("How can I help you today?").wait_for()
    page.get_by_label("Your message").fill("I want to talk to a human")
    page.keyboard.press("Enter")
    page.get_by_text("in the queue").wait_for()
    sender = page.evaluate("localStorage.getItem('rapport.chat.sender')")

    handoff = listed_handoff(bot_servers, sender)
    assert handoff["channel"] == "web"
    path = f"/handoffs/{handoff['id']}"
    claim = agent_api(bot_servers, "POST", f"{path}/claim", agent_id="U1", agent_name="Dana")
    assert claim.status_code == 200
    page.get_by_text("Dana from our support team has joined").wait_for()

    answer = "Hi! I'm Dana. Which order is it about?"
    reply = agent_api(bot_servers, "POST", f"{path}/reply", agent_id="U1", text=answer)
    assert reply.status_code == 200 and reply.json()["delivered"] is True
    page.get_by_text(answer).wait_for()
    # Screen readers hear who wrote it; the log stays the aria-live region.
    assert "Support team: " in (page.locator("#log li", has_text=answer).text_content() or "")
    expect(page.get_by_role("log")).to_have_attribute("aria-live", "polite")

    # Taken from the inbox once, kept by the page: a reload shows it exactly once.
    page.reload()
    page.get_by_text(answer).wait_for()
    expect(page.get_by_text(answer)).to_have_count(1)

    back = agent_api(bot_servers, "POST", f"{path}/handback", agent_id="U1", outcome="resolved")
    assert back.status_code == 200
    page.get_by_text("How would you rate the help you got").wait_for()
    page.screenshot(path=str(tmp_path / "web-chat-agent.png"))
    page.get_by_role("button", name="5", exact=True).click()
    page.get_by_text("Thank you for your feedback").wait_for()
    assert HandoffDesk(bot_servers.crm_url).get(handoff["id"]).csat == 5

    assert requested and all(url.startswith(origin) for url in requested), requested
    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and ("outbound", answer) in d[0]["messages"]
    )
    assert interaction["channel"] == "web"
