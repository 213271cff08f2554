"""The web chat: a small, accessible page at ``/chat/`` that talks to the assistant.

The page, its script and its style are served by the Rasa server itself, with a
Content-Security-Policy that forbids any other origin (no CDN, no tracker). Messages go
to ``POST /chat/webhook``, validated exactly like the REST channel, under the channel
name ``web``; the conversation id is a random id kept in the browser's localStorage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.rest import RestChannel

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

    @classmethod
    def name(cls) -> str:
        """Identities and interactions from the page are recorded as channel ``web``."""
        return "web"

    def url_prefix(self) -> str:
        """An absolute prefix, so the page lives at ``/chat/`` rather than under /webhooks."""
        return URL_PREFIX

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The page (``/``), its assets, and the REST channel's ``/webhook``."""
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

        return blueprint
