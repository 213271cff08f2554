"""While an agent owns a conversation the bot is silent, whatever the customer types;
after the hand-back it answers again. (The agent's side is driven through the CRM's
HandoffDesk, as an agent console does.)"""

from __future__ import annotations

import pytest

from crm_bridge.handoff import HandbackOutcome, HandoffDesk
from tests.e2e.conftest import BotServers
from tests.e2e.test_conversations import inbound, interactions_of, new_sender, reply_text

pytestmark = pytest.mark.e2e


def test_the_bot_is_silent_while_an_agent_holds_the_conversation(bot_servers: BotServers) -> None:
    sender = new_sender("handoff")
    desk = HandoffDesk(bot_servers.crm_url)
    queued = bot_servers.say(sender, "I want to talk to a human")
    assert "in the queue" in reply_text(queued)
    ownership = desk.ownership(sender)
    assert ownership.owner == "queued" and ownership.handoff is not None

    desk.claim(ownership.handoff.id, "U-AGENT-1", "Dana")
    for text in ("where is my order 10001?", "/restart", "/greet", "hello??"):
        assert bot_servers.say(sender, text) == [], text

    desk.hand_back(ownership.handoff.id, "U-AGENT-1", HandbackOutcome.RESOLVED)
    assert "How can I help" in reply_text(bot_servers.say(sender, "hi"))

    [interaction] = interactions_of(
        bot_servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 6
    )
    # Everything the customer wrote meanwhile is in the transcript, with no bot answer.
    messages = interaction["messages"]
    first_silent = messages.index(("inbound", "where is my order 10001?"))
    last_silent = messages.index(("inbound", "hello??"))
    assert all(direction == "inbound" for direction, _ in messages[first_silent : last_silent + 1])
    assert interaction["outcome"] == "handed_off"


def test_an_agent_takes_over_a_telegram_customer_through_the_api(
    bot_servers: BotServers, fake_telegram
) -> None:
    from tests.e2e.conftest import agent_api, listed_handoff
    from tests.e2e.test_telegram import message_update, new_id, press_telegram_button
    from tests.e2e.test_telegram import post as telegram_post

    chat = new_id()
    telegram_post(bot_servers, message_update(chat, "I want to talk to a human"))
    assert "in the queue" in fake_telegram.sent_to(chat, 1)[-1].params["text"]

    for token in ("", "nope"):
        assert agent_api(bot_servers, "GET", "/handoffs", token=token).status_code == 401
    handoff = listed_handoff(bot_servers, str(chat))
    assert handoff["state"] == "queued" and handoff["channel"] == "telegram"

    claim = f"/handoffs/{handoff['id']}/claim"
    first = agent_api(bot_servers, "POST", claim, agent_id="U1", agent_name="Dana")
    second = agent_api(bot_servers, "POST", claim, agent_id="U2", agent_name="Eli")
    assert (first.status_code, second.status_code) == (200, 409)
    unknown = agent_api(bot_servers, "POST", "/handoffs/987654/claim", agent_id="U1")
    assert unknown.status_code == 404 and unknown.json()["request_id"]
    assert "Dana from our support team" in fake_telegram.sent_to(chat, 2)[-1].params["text"]

    before = len(fake_telegram.sent_to(chat))
    for text in ("/restart", "where is my order 10001?"):
        telegram_post(bot_servers, message_update(chat, text))
    reply = agent_api(
        bot_servers,
        "POST",
        f"/handoffs/{handoff['id']}/reply",
        agent_id="U1",
        text="Hi! I'm checking order 10001 now.",
    )
    assert reply.json()["delivered"] is True
    sent = [c.params["text"] for c in fake_telegram.sent_to(chat, before + 1)]
    assert sent[before:] == ["Hi! I'm checking order 10001 now."]  # the bot said nothing
    refused = agent_api(
        bot_servers, "POST", f"/handoffs/{handoff['id']}/reply", agent_id="U2", text="me too"
    )
    assert refused.status_code == 409

    back = agent_api(
        bot_servers,
        "POST",
        f"/handoffs/{handoff['id']}/handback",
        agent_id="U1",
        outcome="resolved",
    )
    assert back.status_code == 200 and back.json()["handoff"]["outcome"] == "resolved"
    question = fake_telegram.sent_to(chat, before + 2)[-1]
    assert "rate the help" in question.params["text"]
    press_telegram_button(bot_servers, chat, question, "4")
    assert (
        "Thank you for your feedback" in fake_telegram.sent_to(chat, before + 3)[-1].params["text"]
    )
    assert HandoffDesk(bot_servers.crm_url).get(handoff["id"]).csat == 4
    telegram_post(bot_servers, message_update(chat, "hi"))
    assert "How can I help" in fake_telegram.sent_to(chat, before + 4)[-1].params["text"]

    [interaction] = interactions_of(
        bot_servers, str(chat), lambda d: bool(d) and len(inbound(d[0])) == 5
    )
    assert ("outbound", "Hi! I'm checking order 10001 now.") in interaction["messages"]


def test_a_claim_from_the_terminal_tells_the_customer(bot_servers: BotServers, fake_telegram):
    """The terminal goes through the same service as Slack and the API: the customer on
    Telegram hears who joined, and a second claim is refused with the server's reason."""
    import os
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from bot.settings import PROJECT_ROOT
    from tests.e2e.test_telegram import message_update, new_id
    from tests.e2e.test_telegram import post as telegram_post

    chat = new_id()
    telegram_post(bot_servers, message_update(chat, "I want to talk to a human"))
    assert "in the queue" in fake_telegram.sent_to(chat, 1)[-1].params["text"]
    handoff = HandoffDesk(bot_servers.crm_url).ownership(str(chat)).handoff
    assert handoff is not None

    env = {**os.environ, **bot_servers.env, "RASA_PORT": str(urlsplit(bot_servers.rasa_url).port)}

    def terminal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "handoffs", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    listed = terminal()
    assert (
        listed.returncode == 0 and f"#{handoff.id}" in listed.stdout and str(chat) in listed.stdout
    )
    claimed = terminal("claim", str(handoff.id), "--agent", "U-TERM", "--name", "Tom")
    assert claimed.returncode == 0, claimed.stderr
    assert "Tom from our support team" in fake_telegram.sent_to(chat, 2)[-1].params["text"]
    again = terminal("claim", str(handoff.id), "--agent", "U-OTHER")
    assert again.returncode == 2 and "409" in again.stderr
    missing = terminal("hand-back", "987654", "--agent", "U-TERM")
    assert missing.returncode == 2 and "404" in missing.stderr
    back = terminal("hand-back", str(handoff.id), "--agent", "U-TERM")
    assert back.returncode == 0 and "resolved" in back.stdout
    assert HandoffDesk(bot_servers.crm_url).get(handoff.id).state == "closed"
