"""The REST channel (``POST /webhooks/rest/webhook``), hardened.

Rasa's own ``RestInput`` lets the caller choose ``input_channel`` (so a REST client could
pose as a Telegram user whose identity is linked to a CRM contact), shares one
"default" conversation among requests without a sender, and hands any text, of any
size, to the NLU. This channel answers a request that cannot be a message (not JSON, no
sender, ``message`` not a string, a body over 4 MiB) with a 400 (413) and a JSON error
that says what is wrong, before anything reaches a conversation. A message that is a
string but empty, too long or in another language is the inbound step's
(``connectors.inbound``): the customer gets an answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import settings as bot_settings
from connectors.inbound import OnNewMessage, ScreenedInputChannel
from connectors.refusals import refuse, status_for
from crm_bridge.errors import InvalidInput, MessageNotTaken

logger = logging.getLogger(__name__)

# A message far beyond the character limit still gets its polite answer; only a body
# no message could need is refused unread.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_SENDER_CHARS = 128
MAX_METADATA_BYTES = 4096


class BadRequest(InvalidInput):
    """The request cannot be a customer message; the text is safe to show the caller."""

    def __init__(self, message: str) -> None:
        super().__init__("body", message)


def validate_sender(sender: object) -> str:
    """The conversation id a caller gave, stripped; BadRequest when it cannot be one."""
    if not isinstance(sender, str) or not sender.strip():
        raise BadRequest("'sender' must be a non-empty string identifying the conversation.")
    if len(sender) > MAX_SENDER_CHARS:
        raise BadRequest(f"'sender' is longer than {MAX_SENDER_CHARS} characters.")
    return sender.strip()


def parse_message_request(body: bytes) -> tuple[str, str, dict[str, Any] | None]:
    """Validate a webhook body and return ``(sender, text, metadata)``."""
    try:
        payload = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("The body must be a JSON object.") from error
    if not isinstance(payload, dict):
        raise BadRequest("The body must be a JSON object.")

    sender = validate_sender(payload.get("sender"))

    text = payload.get("message")
    if not isinstance(text, str):
        raise BadRequest("'message' must be a string.")

    metadata = payload.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise BadRequest("'metadata' must be a JSON object.")
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise BadRequest(f"'metadata' is larger than {MAX_METADATA_BYTES} bytes.")
    return sender, text, metadata


class RestChannel(ScreenedInputChannel):
    """Synchronous REST channel: one request carries one message and returns the replies."""

    def __init__(self) -> None:
        self.max_message_chars = bot_settings.current().max_message_chars

    @classmethod
    def name(cls) -> str:
        """Keeps Rasa's channel name, so webhooks and identities stay ``rest``."""
        return "rest"

    def routes(self, on_new_message: OnNewMessage) -> Blueprint:
        """The ``/`` health route and the ``/webhook`` message route."""
        webhook = Blueprint(f"rapport_{self.name()}_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        self.add_message_route(webhook, on_new_message)
        return webhook

    def add_message_route(self, blueprint: Blueprint, on_new_message: OnNewMessage) -> None:
        """``POST /webhook``: validate, hand the message to Rasa, return the replies."""

        @blueprint.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if len(request.body or b"") > MAX_BODY_BYTES:
                return refuse(request, 413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
            try:
                sender, text, metadata = parse_message_request(request.body)
            except BadRequest as error:
                return refuse(request, 400, str(error))
            collector = CollectingOutputChannel()
            try:
                await on_new_message(
                    UserMessage(
                        text,
                        collector,
                        sender,
                        input_channel=self.name(),
                        metadata=metadata,
                    )
                )
            except MessageNotTaken as error:
                return refuse(request, status_for(error), error.customer_text, retry="true")
            return response.json(collector.messages)
