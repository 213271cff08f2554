"""The web chat: a small, accessible page at ``/chat/`` that talks to the assistant.

The page, its script and its style are served by the Rasa server itself, with a
Content-Security-Policy that forbids any other origin (no CDN, no tracker). Messages go
to ``POST /chat/webhook``, validated exactly like the REST channel, under the channel
name ``web``; the conversation id is a random id kept in the browser's localStorage.

What an agent sends outside a turn (``push``: their replies, the rating question after a
hand-back) waits in the conversation's inbox (``bot.web_inbox``) until the page
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
from bot.web_inbox import InboxUnavailable, WebInbox
from connectors.inbound import OnNewMessage
from connectors.refusals import refuse
from connectors.rest import BadRequest, RestChannel, validate_sender

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

        @blueprint.route("/export/<token>", methods=["GET"], name="chat_export")
        async def export(request: Request, token: str) -> HTTPResponse:
            """A customer's data export, once per link (``crm_bridge.export_links``)."""
            return await download_export(token)

        return blueprint


async def download_export(token: str) -> HTTPResponse:
    """The JSON export the token opens, as a download; 404 for a link that is not ours,
    410 once it was used or expired. Never cached: it is one person's data."""
    import asyncio
    import json

    from crm_bridge.errors import InvalidInput, NotFound, RapportError
    from crm_bridge.export_links import LinkGone

    headers = {"Cache-Control": "no-store", **SECURITY_HEADERS}
    try:
        export = await asyncio.to_thread(_export_for, token)
    except (InvalidInput, NotFound):
        return response.json({"error": "This link is not valid."}, status=404, headers=headers)
    except LinkGone:
        return response.json(
            {"error": "This link was already used or has expired."}, status=410, headers=headers
        )
    except RapportError as error:
        logger.warning("Data export failed: %s", type(error).__name__)
        return response.json({"error": "Please try again later."}, status=503, headers=headers)
    body = json.dumps(export, ensure_ascii=False, indent=2)
    return response.text(
        body,
        content_type="application/json; charset=utf-8",
        headers={**headers, "Content-Disposition": 'attachment; filename="my-data.json"'},
    )


def _export_for(token: str) -> dict[str, Any]:
    """Redeem the token and build its contact's export (blocking: run off the loop)."""
    from crm_bridge import settings as crm_settings
    from crm_bridge.data_export import contact_export
    from crm_bridge.db import session_factory
    from crm_bridge.export_links import ExportLinks
    from crm_bridge.link_tokens import identity_secret

    settings = crm_settings.load()
    factory = session_factory(settings.database_url)
    contact_id = ExportLinks(factory, identity_secret(settings)).redeem(token)
    return contact_export(factory, contact_id)
