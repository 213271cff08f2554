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
