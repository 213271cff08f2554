"""Telegram updates -> what the assistant should hear (pure functions, no I/O).

Decides which updates reach Rasa at all (edited messages and group chatter do not),
under which conversation id, with which text and metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telegram import Chat, Message, Update, User

from crm_bridge.signed_tokens import looks_like_token

GROUP_CHATS = {Chat.GROUP, Chat.SUPERGROUP}
# The shortcut that carries a proof of identity in the metadata (actions/identity_proof.py).
PROVE_IDENTITY = "/prove_identity"


@dataclass(frozen=True)
class Incoming:
    """One customer message for Rasa."""

    sender_id: str
    chat_id: int
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    callback_query_id: str | None = None


def conversation_id(chat: Chat, user: User | None) -> str:
    """Private chats are the chat; in groups each member has their own conversation."""
    if chat.type in GROUP_CHATS and user is not None:
        return f"{chat.id}:{user.id}"
    return str(chat.id)


def chat_id_of(sender_id: str) -> int:
    """The chat to answer in, from a conversation id made by :func:`conversation_id`."""
    return int(sender_id.split(":", 1)[0])


def addressed_to_bot(message: Message, bot_username: str, bot_id: int | None) -> tuple[bool, str]:
    """Whether a group message is for the bot, and its text without the @mention."""
    text = message.text or ""
    mention = f"@{bot_username}".lower() if bot_username else ""
    if mention and mention in text.lower():
        start = text.lower().index(mention)
        return True, (text[:start] + text[start + len(mention) :]).strip()
    author = message.reply_to_message.from_user if message.reply_to_message else None
    replied_to_bot = author is not None and (
        (bot_id is not None and author.id == bot_id)
        or bool(bot_username and (author.username or "").lower() == bot_username.lower())
    )
    return replied_to_bot, text


def incoming_message(
    update: Update, bot_username: str = "", bot_id: int | None = None
) -> Incoming | None:
    """What to pass to Rasa for this update, or None to ignore it."""
    if update.callback_query is not None:
        query = update.callback_query
        message = query.message
        if message is None or not query.data:
            return None
        return Incoming(
            sender_id=conversation_id(message.chat, query.from_user),
            chat_id=message.chat.id,
            text=query.data,
            metadata={"telegram": {"button": True}},
            callback_query_id=query.id,
        )
    # Edited messages and channel posts never re-run the conversation.
    message = update.message
    if message is None:
        return None
    sender = conversation_id(message.chat, message.from_user)
    if message.contact is not None:
        contact = message.contact
        own = message.from_user is not None and contact.user_id == message.from_user.id
        # A proof of identity (actions/identity_proof.py), never a text for NLU.
        return Incoming(
            sender_id=sender,
            chat_id=message.chat.id,
            text=PROVE_IDENTITY,
            metadata={
                "telegram": {
                    "shared_contact": {
                        "phone": contact.phone_number,
                        "user_id": contact.user_id,
                        "own": own,
                    }
                }
            },
        )
    if not message.text:
        return None
    text = message.text
    if message.chat.type in GROUP_CHATS:
        for_bot, text = addressed_to_bot(message, bot_username, bot_id)
        if not for_bot:
            return None
    metadata: dict[str, Any] = {"telegram": {"chat_type": message.chat.type}}
    if text.startswith("/start"):
        # Deep links (t.me/<bot>?start=<payload>) open the chat with "/start <payload>".
        # A link token (``python -m crm_bridge link-token``) proves who the customer is;
        # any other payload (a campaign's name, say) is kept and the chat greets.
        payload = text[len("/start") :].strip()
        if looks_like_token(payload):
            metadata["link_token"] = payload
            text = PROVE_IDENTITY
        else:
            metadata["telegram"]["start_payload"] = payload or None
            text = "/greet"
    return Incoming(sender_id=sender, chat_id=message.chat.id, text=text, metadata=metadata)
