"""Telegram end to end: signed webhook requests to the running server, replies observed
at the fake Bot API on 127.0.0.1, transcripts checked in the CRM."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import TELEGRAM_SECRET, BotServers
from tests.e2e.test_conversations import inbound, interactions_of
from tests.fakes.telegram_api import BOT_USER

pytestmark = pytest.mark.e2e

HEADER = "X-Telegram-Bot-Api-Secret-Token"


def new_id() -> int:
    return random.randint(10_000_000, 99_999_999)


def message_update(
    chat_id: int, text: str, user_id: int | None = None, chat_type: str = "private", **extra: Any
) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type != "private":
        chat["title"] = "Customers"
    update_id = new_id()
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": chat,
            "text": text,
            "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "Sam"},
            **extra,
        },
    }


def post(
    servers: BotServers, update: Any, secret: str | None = TELEGRAM_SECRET
) -> requests.Response:
    headers = {HEADER: secret} if secret is not None else {}
    url = f"{servers.rasa_url}/webhooks/telegram/webhook"
    if isinstance(update, bytes):
        headers["Content-Type"] = "application/json"
        return requests.post(url, data=update, headers=headers, timeout=60)
    return requests.post(url, json=update, headers=headers, timeout=60)


def press_telegram_button(servers: BotServers, chat: int, question: Any, title: str) -> None:
    """The Telegram customer presses one of a message's inline buttons."""
    keyboard = question.params["reply_markup"]["inline_keyboard"]
    data = {b["text"]: b["callback_data"] for row in keyboard for b in row}[title]
    post(
        servers,
        {
            "update_id": new_id(),
            "callback_query": {
                "id": f"cb-{new_id()}",
                "chat_instance": "x",
                "data": data,
                "from": {"id": chat, "is_bot": False, "first_name": "Sam"},
                "message": {
                    "message_id": 2,
                    "date": 0,
                    "chat": {"id": chat, "type": "private"},
                    "text": question.params["text"],
                },
            },
        },
    )


def test_the_webhook_is_registered_with_a_secret(bot_servers, fake_telegram) -> None:
    # Registered once the server has started, which may be just after it answers.
    [registration] = fake_telegram.wait_for("setWebhook", 1)
    assert registration.params["secret_token"] == TELEGRAM_SECRET
    assert registration.params["url"].endswith("/webhooks/telegram/webhook")


@pytest.mark.parametrize("secret", [None, "", "wrong-secret"])
def test_requests_without_the_secret_are_refused(bot_servers, fake_telegram, secret) -> None:
    chat = new_id()
    response = post(bot_servers, message_update(chat, "hi"), secret=secret)
    assert response.status_code == 401
    time.sleep(1)
    assert fake_telegram.sent_to(chat) == []
    assert interactions_of(bot_servers, str(chat), lambda d: True) == []


def test_a_customer_chats_and_presses_a_button(bot_servers, fake_telegram) -> None:
    chat = new_id()
    assert post(bot_servers, message_update(chat, "hi")).json() == {"status": "processed"}
    [greeting] = fake_telegram.sent_to(chat, 1)
    keyboard = greeting.params["reply_markup"]["inline_keyboard"]
    buttons = {b["text"]: b["callback_data"] for row in keyboard for b in row}
    assert buttons["Where is my order?"] == "/order_status"

    press = {
        "update_id": new_id(),
        "callback_query": {
            "id": f"cb-{chat}",
            "chat_instance": "x",
            "data": "/order_status",
            "from": {"id": chat, "is_bot": False, "first_name": "Sam"},
            "message": {
                "message_id": 1,
                "date": int(time.time()),
                "chat": {"id": chat, "type": "private"},
                "from": BOT_USER,
                "text": greeting.params["text"],
            },
        },
    }
    assert post(bot_servers, press).status_code == 200
    assert (
        fake_telegram.wait_for("answerCallbackQuery", 1)[-1].params["callback_query_id"]
        == f"cb-{chat}"
    )
    replies = fake_telegram.sent_to(chat, 2)
    assert "order number" in replies[-1].params["text"]

    [interaction] = interactions_of(
        bot_servers, str(chat), lambda d: bool(d) and len(inbound(d[0])) == 2
    )
    assert interaction["channel"] == "telegram"
    assert inbound(interaction) == ["hi", "/order_status"]


def test_the_same_update_twice_at_once_is_processed_once(bot_servers, fake_telegram) -> None:
    chat = new_id()
    update = message_update(chat, "what are your opening hours?")
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(
            r.json()["status"] for r in pool.map(lambda _: post(bot_servers, update), range(2))
        )
    assert statuses == ["duplicate", "processed"]
    assert len(fake_telegram.sent_to(chat, 1)) == 1
    [interaction] = interactions_of(bot_servers, str(chat), lambda d: bool(d))
    assert inbound(interaction) == ["what are your opening hours?"]


def test_edited_messages_and_unknown_updates_do_nothing(bot_servers, fake_telegram) -> None:
    chat = new_id()
    edited = message_update(chat, "where is my order 10001")
    edited["edited_message"] = {**edited.pop("message"), "edit_date": int(time.time())}
    assert post(bot_servers, edited).json()["status"] == "ignored"
    assert post(bot_servers, {"update_id": new_id(), "brand_new_kind": {"x": 1}}).status_code == 200
    assert post(bot_servers, b'{"update_id": ').status_code == 400
    assert post(bot_servers, b'{"no": "update id"}').status_code == 400
    time.sleep(1)
    assert fake_telegram.sent_to(chat) == []


def test_in_groups_only_mentions_and_replies_are_answered(bot_servers, fake_telegram) -> None:
    group, member = -new_id(), new_id()
    chatter = message_update(group, "anyone know the opening hours?", member, "supergroup")
    assert post(bot_servers, chatter).json()["status"] == "ignored"
    mention = message_update(group, "@rapport_demo_bot when are you open?", member, "supergroup")
    assert post(bot_servers, mention).json()["status"] == "processed"
    [answer] = fake_telegram.sent_to(group, 1)
    assert "Monday to Friday" in answer.params["text"]
    [interaction] = interactions_of(bot_servers, f"{group}:{member}", lambda d: bool(d))
    assert inbound(interaction) == ["when are you open?"]


def test_a_429_is_waited_out_and_the_message_delivered(bot_servers, fake_telegram) -> None:
    chat = new_id()
    fake_telegram.rate_limit_next_sends = 1
    post(bot_servers, message_update(chat, "are you a bot?"))
    [refused] = [
        c
        for c in fake_telegram.calls
        if c.method == "sendMessage#429" and c.params.get("chat_id") == chat
    ]
    [delivered] = fake_telegram.sent_to(chat, 1)
    assert "bot" in delivered.params["text"]
    assert delivered.at - refused.at >= fake_telegram.retry_after_seconds * 0.9


def test_deep_links_huge_and_unicode_messages(bot_servers, fake_telegram) -> None:
    chat = new_id()
    assert (
        post(bot_servers, message_update(chat, "/start campaign-42")).json()["status"]
        == "processed"
    )
    assert "How can I help" in fake_telegram.sent_to(chat, 1)[0].params["text"]
    huge = "📦 où est ma commande ? " * 150
    assert post(bot_servers, message_update(chat, huge)).json()["status"] == "processed"
    assert len(fake_telegram.sent_to(chat, 2)) >= 2


def test_no_token_or_secret_in_the_server_logs(bot_servers, fake_telegram) -> None:
    from tests.e2e.conftest import TELEGRAM_TOKEN

    chat = new_id()
    post(bot_servers, message_update(chat, "hi"))
    fake_telegram.sent_to(chat, 1)
    logs = "".join(path.read_text(errors="replace") for path in bot_servers.log_dir.glob("*.log"))
    for secret in (TELEGRAM_TOKEN, TELEGRAM_SECRET, "xoxb-test-token"):
        assert secret not in logs
