"""Slack end to end: signed requests (and forged, stale, retried ones) to the running
server; replies observed at the fake Slack Web API on 127.0.0.1; transcripts in the CRM."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from tests.e2e.conftest import SLACK_SIGNING_SECRET, BotServers
from tests.e2e.test_conversations import inbound, interactions_of
from tests.fakes.slack_api import BOT_ID, BOT_USER_ID, TEAM_ID, FakeSlackApi

pytestmark = pytest.mark.e2e


def new_user() -> str:
    return f"U{random.randint(10**9, 10**10 - 1)}"


def signed_post(
    servers: BotServers,
    body: bytes,
    content_type: str = "application/json",
    secret: str = SLACK_SIGNING_SECRET,
    timestamp: int | None = None,
    retry: int | None = None,
) -> requests.Response:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={signature}",
    }
    if retry is not None:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    url = f"{servers.rasa_url}/webhooks/slack/events"
    return requests.post(url, data=body, headers=headers, timeout=60)


def event_body(event: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": TEAM_ID,
            "api_app_id": "A1",
            "event_id": f"Ev{random.randint(10**9, 10**10 - 1)}",
            "event_time": int(time.time()),
            "event": {"event_ts": f"{time.time():.6f}", **event},
        }
    ).encode()


def dm(user: str, text: str, channel: str | None = None, **extra: Any) -> bytes:
    return event_body(
        {
            "type": "message",
            "channel_type": "im",
            "user": user,
            "text": text,
            "channel": channel or f"D{user}",
            "ts": f"{time.time():.6f}",
            **extra,
        }
    )


def posts_to(api: FakeSlackApi, channel: str, count: int = 0) -> list:
    if count:
        return api.wait_for("chat.postMessage", count, channel=channel)
    return api.calls_to("chat.postMessage", channel=channel)


@pytest.mark.parametrize(
    "how", ["forged", "stale", "unsigned"], ids=["forged", "stale (10 min old)", "unsigned"]
)
def test_unverifiable_requests_are_refused(bot_servers, fake_slack, how) -> None:
    user = new_user()
    body = dm(user, "hi")
    if how == "forged":
        response = signed_post(bot_servers, body, secret="not-the-secret")
    elif how == "stale":
        response = signed_post(bot_servers, body, timestamp=int(time.time()) - 600)
    else:
        response = requests.post(
            f"{bot_servers.rasa_url}/webhooks/slack/events",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    assert response.status_code == 401
    time.sleep(1)
    assert posts_to(fake_slack, f"D{user}") == []
    assert interactions_of(bot_servers, f"{TEAM_ID}.{user}", lambda d: True) == []


def test_a_dm_conversation_with_buttons(bot_servers, fake_slack) -> None:
    user = new_user()
    channel = f"D{user}"
    assert signed_post(bot_servers, dm(user, "hi")).status_code == 200
    [greeting] = posts_to(fake_slack, channel, 1)
    actions = next(b for b in greeting.params["blocks"] if b["type"] == "actions")["elements"]
    order_button = next(a for a in actions if a["text"]["text"] == "Where is my order?")
    assert order_button["value"] == "/order_status"

    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": user},
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel},
        "trigger_id": f"trig-{user}",
        "actions": [{**order_button, "action_ts": "1.2"}],
        "message": {"ts": "1.1"},
        "api_app_id": "A1",
        "token": "legacy",
    }
    form = urlencode({"payload": json.dumps(payload)}).encode()
    assert signed_post(bot_servers, form, "application/x-www-form-urlencoded").status_code == 200
    replies = posts_to(fake_slack, channel, 2)
    assert "order number" in replies[-1].params["text"]

    [interaction] = interactions_of(
        bot_servers, f"{TEAM_ID}.{user}", lambda d: bool(d) and len(inbound(d[0])) == 2
    )
    assert interaction["channel"] == "slack"
    assert inbound(interaction) == ["hi", "/order_status"]


def test_retries_and_concurrent_duplicates_are_answered_once(bot_servers, fake_slack) -> None:
    user = new_user()
    body = dm(user, "what are your opening hours?")
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(lambda _: signed_post(bot_servers, body).status_code, range(2)))
    assert codes == [200, 200]
    assert signed_post(bot_servers, body, retry=1).status_code == 200
    assert len(posts_to(fake_slack, f"D{user}", 1)) == 1
    [interaction] = interactions_of(bot_servers, f"{TEAM_ID}.{user}", lambda d: bool(d))
    assert inbound(interaction) == ["what are your opening hours?"]


def test_the_event_is_acknowledged_before_a_slow_reply(bot_servers, fake_slack) -> None:
    user = new_user()
    fake_slack.post_delay_seconds = 5
    try:
        response = signed_post(bot_servers, dm(user, "are you a bot?"))
        # Slack's ack deadline is 3 s: the answer must not wait for the (slow) reply.
        assert response.status_code == 200
        assert posts_to(fake_slack, f"D{user}") == []
        assert len(posts_to(fake_slack, f"D{user}", 1)) == 1
    finally:
        fake_slack.post_delay_seconds = 0


def test_mentions_are_answered_in_their_thread_and_bots_ignored(bot_servers, fake_slack) -> None:
    user, channel = new_user(), f"C{random.randint(10**8, 10**9)}"
    ts = f"{time.time():.6f}"
    mention = event_body(
        {
            "type": "app_mention",
            "user": user,
            "channel": channel,
            "ts": ts,
            "text": f"<@{BOT_USER_ID}> when are you open?",
        }
    )
    assert signed_post(bot_servers, mention).status_code == 200
    [answer] = posts_to(fake_slack, channel, 1)
    assert answer.params["thread_ts"] == ts and "Monday to Friday" in answer.params["text"]

    for own in (
        dm(BOT_USER_ID, "echo", channel=f"D{user}"),
        dm("UOTHERBOT", "beep", channel=f"D{user}", bot_id="BOTHER"),
        dm(user, "edited", subtype="message_changed"),
        event_body(
            {
                "type": "message",
                "channel_type": "im",
                "bot_id": BOT_ID,
                "channel": f"D{user}",
                "text": "mine",
                "ts": ts,
            }
        ),
    ):
        assert signed_post(bot_servers, own).status_code == 200
    time.sleep(1.5)
    assert posts_to(fake_slack, f"D{user}") == []


def test_malformed_and_unknown_payloads_are_not_server_errors(bot_servers, fake_slack) -> None:
    for body, content_type in (
        (b"{oops", "application/json"),
        (
            json.dumps({"type": "event_callback", "event": {"type": "reaction_added"}}).encode(),
            "application/json",
        ),
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded"),
    ):
        response = signed_post(bot_servers, body, content_type)
        assert response.status_code < 500, (body, response.status_code, response.text)
    huge = "🧦 où sont mes chaussettes ? " * 150
    user = new_user()
    assert signed_post(bot_servers, dm(user, huge)).status_code == 200
    assert posts_to(fake_slack, f"D{user}", 1)
