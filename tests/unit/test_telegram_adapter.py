"""Which Telegram updates reach the assistant, as whom, with what."""

from __future__ import annotations

import time

from telegram import Bot, Update

from connectors.dedupe import Deduplicator
from connectors.telegram_adapter import chat_id_of, incoming_message

BOT = Bot("1:x")


def update(**fields: object) -> Update:
    parsed = Update.de_json({"update_id": 1, **fields}, BOT)
    assert parsed is not None
    return parsed


def message(chat: dict, text: str | None = None, **extra: object) -> dict:
    body = {
        "message_id": 5,
        "date": int(time.time()),
        "chat": chat,
        "from": {"id": 77, "is_bot": False, "first_name": "Sam"},
        **extra,
    }
    if text is not None:
        body["text"] = text
    return body


def test_a_shared_contact_reaches_rasa_as_metadata() -> None:
    contact = {"phone_number": "+447700900123", "first_name": "Sam", "user_id": 77}
    incoming = incoming_message(
        update(message=message({"id": 77, "type": "private"}, contact=contact))
    )
    assert incoming is not None
    assert incoming.text == "/prove_identity"
    assert incoming.metadata["telegram"]["shared_contact"] == {
        "phone": "+447700900123",
        "user_id": 77,
        "own": True,
    }


def test_a_deep_link_token_is_a_proof_of_identity_in_the_metadata() -> None:
    token = "A" * 22 + "b-_" + "9" * 19  # the shape of crm_bridge.link_tokens' tokens
    incoming = incoming_message(
        update(message=message({"id": 77, "type": "private"}, f"/start {token}"))
    )
    assert incoming is not None and incoming.text == "/prove_identity"
    assert incoming.metadata["link_token"] == token


def test_another_deep_link_payload_is_kept_and_the_text_a_greeting() -> None:
    incoming = incoming_message(
        update(message=message({"id": 77, "type": "private"}, "/start ref-9"))
    )
    assert incoming is not None and incoming.text == "/greet"
    assert incoming.metadata["telegram"]["start_payload"] == "ref-9"
    assert "link_token" not in incoming.metadata


def test_a_plain_start_is_a_greeting() -> None:
    incoming = incoming_message(update(message=message({"id": 77, "type": "private"}, "/start")))
    assert incoming is not None and incoming.text == "/greet"
    assert "link_token" not in incoming.metadata


def test_group_members_have_their_own_conversations() -> None:
    group = {"id": -100, "type": "group", "title": "G"}
    incoming = incoming_message(
        update(message=message(group, "hey @Rapport_Bot help")), bot_username="rapport_bot"
    )
    assert incoming is not None
    assert (incoming.sender_id, incoming.text) == ("-100:77", "hey  help")
    assert chat_id_of(incoming.sender_id) == -100
    reply = message(
        group,
        "and my order?",
        reply_to_message=message(
            group, "Hi!", **{"from": {"id": 9, "is_bot": True, "first_name": "B"}}
        ),
    )
    assert incoming_message(update(message=reply), bot_username="rapport_bot", bot_id=9) is not None
    assert incoming_message(update(message=message(group, "chatting")), "rapport_bot", 9) is None


def test_stickers_and_edits_are_ignored() -> None:
    assert incoming_message(update(message=message({"id": 1, "type": "private"}))) is None
    edited = message({"id": 1, "type": "private"}, "x", edit_date=int(time.time()))
    assert incoming_message(update(edited_message=edited)) is None


async def test_a_key_is_claimed_once() -> None:
    dedupe = Deduplicator()
    assert await dedupe.first_time("1") is True
    assert await dedupe.first_time("1") is False
    assert await dedupe.first_time("2") is True


async def test_replies_to_one_chat_are_spaced_but_other_chats_are_not() -> None:
    import asyncio

    from connectors.telegram import SendPacer

    pacer = SendPacer(chat_interval=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await pacer.wait(1)
    await pacer.wait(2)
    other_chat = loop.time() - start
    await pacer.wait(1)
    same_chat = loop.time() - start
    assert other_chat < 0.15 <= same_chat


async def test_webhook_deliveries_wait_for_the_bot_to_finish_starting() -> None:
    import asyncio

    from connectors.telegram import TelegramChannel

    channel = TelegramChannel()
    # Before start() has initialised the bot, a delivery waits rather than being lost...
    assert await channel.wait_until_ready(0.05) is False
    waiting = asyncio.ensure_future(channel.wait_until_ready(5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    channel.ready.set()  # what start() does once Bot.initialize has returned
    assert await waiting is True
    # ...and after stop() the channel is no longer ready.
    await channel.stop()
    assert await channel.wait_until_ready(0.05) is False
