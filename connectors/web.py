"""The web chat: a small, accessible page at ``/chat/`` that talks to the assistant.

The page, its script and its style are served by the Rasa server itself, with a
Content-Security-Policy that forbids any other origin (no CDN, no tracker). Messages go
to ``POST /chat/webhook``, validated exactly like the REST channel, under the channel
name ``web``; the conversation id is a random id kept in the browser's localStorage.

What an agent sends outside a turn (``push``: their replies, the rating question after a
hand-back) waits in the conversation's inbox (``connectors.web_inbox``) until the page
collects it with ``GET /chat/inbox?sender=<id>``, a long poll.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import settings as bot_settings
from connectors.inbound import OnNewMessage
from connectors.refusals import refuse
from connectors.rest import BadRequest, RestChannel, validate_sender
from connectors.web_inbox import InboxUnavailable, WebInbox

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "web_static"
URL_PREFIX = "/chat"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Well under the 60 s after which reverse proxies usually drop a silent request (nginx's
# proxy_read_timeout), and long enough that an open page asks about three times a minute.
INBOX_WAIT_SECONDS = 20.0
CONTENT_TYPES = {
    "chat.js": "application/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}


@lru_cache(maxsize=4)
def static_text(name: str) -> str:
    """A file of the page, with ``{{base}}`` replaced by the channel's URL prefix."""
    return (STATIC_DIR / name).read_text(encoding="utf-8").replace("{{base}}", URL_PREFIX)


class WebChatChannel(RestChannel):
    """Serves the chat page and takes its messages (channel name ``web``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox = WebInbox(bot_settings.current().redis_url, "rapport:web:inbox")

    @classmethod
    def name(cls) -> str:
        """Identities and interactions from the page are recorded as channel ``web``."""
        return "web"

    def url_prefix(self) -> str:
        """An absolute prefix, so the page lives at ``/chat/`` rather than under /webhooks."""
        return URL_PREFIX

    async def push(
        self, sender_id: str, text: str, buttons: list[dict[str, Any]] | None = None
    ) -> None:
        """Keep a message (e.g. an agent's reply) until the customer's page collects it."""
        message: dict[str, Any] = {"text": text, "agent": True}
        if buttons:
            message["buttons"] = buttons
        await self.inbox.put(sender_id, message)

    def routes(self, on_new_message: OnNewMessage) -> Blueprint:
        """The page (``/``), its assets, ``/inbox`` and the REST channel's ``/webhook``."""
        blueprint = Blueprint("rapport_web_chat", __name__)
        self.add_message_route(blueprint, on_new_message)

        @blueprint.route("/", methods=["GET"], name="chat_page")
        async def page(request: Request) -> HTTPResponse:
            return response.html(static_text("index.html"), headers=SECURITY_HEADERS)

        @blueprint.route("/<asset:(chat\\.js|chat\\.css)>", methods=["GET"])
        async def asset(request: Request, asset: str) -> HTTPResponse:
            return response.text(
                static_text(asset), content_type=CONTENT_TYPES[asset], headers=SECURITY_HEADERS
            )

        @blueprint.route("/inbox", methods=["GET"])
        async def inbox(request: Request) -> HTTPResponse:
            """The conversation's pushed messages, shaped like webhook replies; waits for one."""
            try:
                sender = validate_sender(request.args.get("sender"))
            except BadRequest as error:
                return refuse(request, 400, str(error))
            try:
                messages = await self.inbox.wait(sender, INBOX_WAIT_SECONDS)
            except InboxUnavailable as error:
                logger.warning("Web chat inbox unavailable: %s", error)
                return response.json(
                    {"error": "Messages from our team cannot be fetched right now."}, status=503
                )
            return response.json(messages, headers={"Cache-Control": "no-store"})

        return blueprint
