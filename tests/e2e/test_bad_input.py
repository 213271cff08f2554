"""Bad input over the live REST channel: a clear 400 or a clear answer, never a crash,
and nothing half-written in the CRM."""

from __future__ import annotations

import uuid

import requests

from tests.e2e.conftest import BotServers


def post_raw(servers: BotServers, data: bytes) -> requests.Response:
    return requests.post(
        servers.webhook, data=data, headers={"Content-Type": "application/json"}, timeout=60
    )


def test_malformed_json_is_a_400_with_an_error(bot_servers: BotServers) -> None:
    response = post_raw(bot_servers, b'{"sender": "x", "message": ')
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_a_message_that_is_not_text_is_refused(bot_servers: BotServers) -> None:
    sender = f"e2e-bad-{uuid.uuid4().hex[:8]}"
    for message in (None, 42, ["hi"], {"text": "hi"}):
        response = requests.post(
            bot_servers.webhook, json={"sender": sender, "message": message}, timeout=60
        )
        assert response.status_code == 400
        assert "'message' must be a string" in response.json()["error"]
        assert response.json()["request_id"]


def test_a_body_no_message_could_need_is_refused_unread(bot_servers: BotServers) -> None:
    body = b'{"sender": "x", "message": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    assert post_raw(bot_servers, body).status_code == 413


def test_missing_sender_is_refused(bot_servers: BotServers) -> None:
    response = requests.post(bot_servers.webhook, json={"message": "hello"}, timeout=60)
    assert response.status_code == 400
    assert "sender" in response.json()["error"]


def test_unicode_and_emoji_get_an_answer(bot_servers: BotServers) -> None:
    sender = f"e2e-uni-{uuid.uuid4().hex[:8]}"
    replies = bot_servers.say(sender, "Bonjour 👋 où est ma commande ? 你好")
    assert replies and all(isinstance(reply.get("text", ""), str) for reply in replies)
    # The server is still healthy afterwards.
    assert bot_servers.say(sender, "hello")


def test_the_server_survives_a_burst_of_bad_requests(bot_servers: BotServers) -> None:
    for payload in (b"", b"null", b"[]", b'{"sender": 1}', b"\xff\xfe\xfd"):
        assert post_raw(bot_servers, payload).status_code == 400
    assert requests.get(f"{bot_servers.rasa_url}/webhooks/rest/", timeout=10).status_code == 200


def test_rasas_http_api_is_off_by_default(bot_servers: BotServers) -> None:
    for path in ("/status", "/conversations/demo-alice/tracker", "/model/parse"):
        response = requests.get(f"{bot_servers.rasa_url}{path}", timeout=10)
        assert response.status_code == 404, path


def test_unknown_orders_and_invalid_emails_get_clear_answers(bot_servers: BotServers) -> None:
    from tests.e2e.test_conversations import linked_sender, reply_text

    sender = linked_sender(bot_servers, "alice@example.com", "bad")
    [unknown] = [bot_servers.say(sender, "where is my order 99999?")]
    assert "can't find an order 99999" in reply_text(unknown)
    bot_servers.say(sender, "stop")
    bot_servers.say(sender, "I want to change my email address")
    invalid = bot_servers.say(sender, "alice@@example")
    assert "doesn't look like" in reply_text(invalid)
    # Nothing was changed by the bad value.
    from crm_bridge.sql_gateway import SqlCrmGateway

    alice = SqlCrmGateway.from_url(bot_servers.crm_url).find_contact_by_identity("rest", sender)
    assert alice is not None and alice.email == "alice@example.com"
