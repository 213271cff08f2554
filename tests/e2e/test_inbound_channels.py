"""The inbound step on every channel, end to end: what a customer gets for an empty,
meaningless, oversized, marked-up or foreign message, what the transcript keeps, and
that a refused request's body never reaches the log."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from sqlalchemy import select

from crm_bridge import models
from crm_bridge.db import session_factory
from tests.e2e.conftest import BotServers
from tests.e2e.test_conversations import inbound, interactions_of, reply_text
from tests.e2e.test_slack import dm, new_user, posts_to, signed_post
from tests.e2e.test_telegram import message_update, new_id, post
from tests.fakes.slack_api import TEAM_ID

pytestmark = pytest.mark.e2e


def transcript(servers: BotServers, sender: str, count: int) -> list[tuple[str, str, str | None]]:
    """(text, intent, language) of the sender's customer lines, once ``count`` are there."""
    interactions_of(servers, sender, lambda d: bool(d) and len(inbound(d[-1])) >= count)
    with session_factory(servers.crm_url)() as session:
        rows = session.execute(
            select(models.InteractionMessage)
            .join(models.Interaction)
            .where(
                models.Interaction.sender_id == sender,
                models.InteractionMessage.direction == "inbound",
            )
            .order_by(models.InteractionMessage.event_ts)
        ).scalars()
        return [(row.text, row.intent or "", row.language) for row in rows]


def rest_sender(prefix: str) -> str:
    return f"e2e-{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u00a0\u200c", "???", "...", "🙈🙈"])
def test_meaningless_messages_get_a_clarifying_question(bot_servers: BotServers, text) -> None:
    sender = rest_sender("empty")
    replies = bot_servers.say(sender, text)
    assert replies, "never silent"
    assert "didn't catch" in reply_text(replies).lower()
    [(_, intent, _)] = transcript(bot_servers, sender, 1)
    assert intent == "inbound_unclear"  # never affirm for "???"


def test_a_thumbs_up_is_a_yes(bot_servers: BotServers) -> None:
    sender = rest_sender("thumb")
    assert bot_servers.say(sender, "👍")
    assert transcript(bot_servers, sender, 1) == [("👍", "affirm", "en")]


def test_an_oversized_message_is_answered_politely_and_kept_truncated(bot_servers) -> None:
    sender = rest_sender("long")
    text = "my parcel " * 1000  # 10,000 characters
    replies = bot_servers.say(sender, text)
    assert "too long" in reply_text(replies) and "4096" in reply_text(replies)
    [(line, intent, _)] = transcript(bot_servers, sender, 1)
    assert intent == "inbound_too_long"
    assert line.startswith(text.strip()[:4000]) and "truncated" in line
    assert len(line) < 4200
    # The conversation goes on normally.
    assert "Monday to Friday" in reply_text(bot_servers.say(sender, "when are you open?"))


def test_a_dutch_message_is_answered_in_dutch_with_a_person_on_offer(bot_servers) -> None:
    sender = rest_sender("nl")
    replies = bot_servers.say(sender, "waar is mijn bestelling")
    payloads = [b["payload"] for r in replies for b in r.get("buttons", [])]
    assert "/request_human" in payloads
    assert "Engels" in reply_text(replies)
    assert transcript(bot_servers, sender, 1) == [
        ("waar is mijn bestelling", "inbound_other_language", "nl")
    ]


def test_a_pasted_megabyte_over_rest_gets_the_polite_answer(bot_servers: BotServers) -> None:
    sender = rest_sender("mb")
    replies = bot_servers.say(sender, "help me " * 150_000)  # 1.2 MB
    assert "too long" in reply_text(replies)
    [(line, intent, _)] = transcript(bot_servers, sender, 1)
    # Rasa's UserMessage strips the trailing space: 1,199,999 characters are counted.
    assert intent == "inbound_too_long" and "had 1199999 characters" in line


def test_the_web_chat_shares_the_step(bot_servers: BotServers) -> None:
    sender = rest_sender("web")
    response = requests.post(
        f"{bot_servers.rasa_url}/chat/webhook",
        json={"sender": sender, "message": "\u200b  ?!  "},
        timeout=60,
    )
    assert response.status_code == 200 and response.json()
    assert transcript(bot_servers, sender, 1)[0][1] == "inbound_unclear"


def test_a_megabyte_telegram_message_does_not_stall_anyone(bot_servers, fake_telegram) -> None:
    chat = new_id()
    huge = "where is my parcel? " * 50_000  # 1 MB
    started = time.monotonic()
    assert post(bot_servers, message_update(chat, huge)).json() == {"status": "processed"}
    [answer] = fake_telegram.sent_to(chat, 1)
    assert "too long" in answer.params["text"]
    [(line, intent, _)] = transcript(bot_servers, str(chat), 1)
    assert intent == "inbound_too_long"
    # Rasa's UserMessage strips the trailing space: 999,999 characters are counted.
    assert "the message had 999999 characters" in line
    # Not a timing goal (bench/ has those): the server answers others straight after.
    other = rest_sender("other")
    assert bot_servers.say(other, "hi")
    assert time.monotonic() - started < 60


def test_telegram_invisible_text_gets_a_reply(bot_servers, fake_telegram) -> None:
    chat = new_id()
    assert post(bot_servers, message_update(chat, "\u200b\u200b \u00a0")).status_code == 200
    [answer] = fake_telegram.sent_to(chat, 1)
    assert "didn't catch" in answer.params["text"].lower()


def test_slack_markup_reaches_nlu_and_the_transcript_as_plain_text(bot_servers, fake_slack):
    user = new_user()
    text = "hi <@U0OTHER1|sam> see <https://shop.example/o/10001|my order> &amp; thanks"
    assert signed_post(bot_servers, dm(user, text)).status_code == 200
    assert posts_to(fake_slack, f"D{user}", 1)
    [(line, _, _)] = transcript(bot_servers, f"{TEAM_ID}.{user}", 1)
    assert line == "hi @sam see my order & thanks"


def test_a_refused_slack_request_is_logged_without_its_body(bot_servers, fake_slack) -> None:
    marker = f"SECRET-CUSTOMER-WORDS-{uuid.uuid4().hex}"
    body = dm(new_user(), marker + " x" * 500_000)  # about 1 MB, forged
    response = signed_post(bot_servers, body, secret="not-the-secret")
    assert response.status_code == 401
    request_id = response.json()["request_id"]
    time.sleep(0.5)
    log = (bot_servers.log_dir / "rasa.log").read_text(errors="replace")
    [line] = [row for row in log.splitlines() if request_id in row]
    assert "POST /webhooks/slack/events" in line and str(len(body)) in line and "401" in line
    assert marker not in log


def test_a_refused_rest_request_is_logged_without_its_body(bot_servers: BotServers) -> None:
    marker = f"SECRET-REST-WORDS-{uuid.uuid4().hex}"
    response = requests.post(bot_servers.webhook, json={"message": marker}, timeout=30)
    assert response.status_code == 400 and "sender" in response.json()["error"]
    time.sleep(0.5)
    log = (bot_servers.log_dir / "rasa.log").read_text(errors="replace")
    assert response.json()["request_id"] in log and marker not in log
