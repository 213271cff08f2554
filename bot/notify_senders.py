"""The senders of proactive messages: one per channel, each within its platform's limits.

Telegram (``sendMessage``) and Slack (``chat.postMessage``) are called with httpx and
timeouts; each sender's ``Pacer`` (``crm_bridge.pacing``) keeps to the platform's rate
limits, and a 429 surfaces as :class:`RateLimited` with the platform's "retry after". The
web chat cannot be written to: a message is put in the conversation's inbox
(``bot.web_inbox``), which the open page collects.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from bot import settings as bot_settings
from crm_bridge.errors import Unavailable
from crm_bridge.pacing import Limit, Pacer

CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 10.0
TELEGRAM_OVERALL = Limit(30, 1.0)  # Telegram: about 30 messages a second per bot
# Slack's chat.postMessage: about one a second per conversation, short bursts tolerated.
SLACK_PER_CONVERSATION = Limit(3, 3.0)


class SendError(Exception):
    """A send failed; the text names the platform's answer, never the customer or token."""


class RateLimited(SendError):
    """The platform answered 429: wait ``retry_after`` seconds."""

    def __init__(self, channel: str, retry_after: float) -> None:
        super().__init__(f"{channel} answered 429 (retry after {retry_after:g} s)")
        self.retry_after = retry_after


class Sender(Protocol):
    """Writes one message to one recipient of a channel, within its limits."""

    pacer: Pacer

    async def send(self, external_id: str, text: str) -> None:
        """Deliver ``text``; raises SendError (RateLimited on a 429)."""

    async def close(self) -> None:
        """Release connections."""


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    )


async def _post(client: httpx.AsyncClient, channel: str, url: str, **kwargs: Any) -> Any:
    try:
        return await client.post(url, **kwargs)
    except httpx.HTTPError as error:
        # The type only: httpx's messages carry the URL, and Telegram's holds the token.
        raise SendError(f"{channel} unreachable ({type(error).__name__})") from None


class TelegramSender:
    """``sendMessage`` to a private chat that started the bot."""

    def __init__(self, token: str, base_url: str, chat_interval: float = 1.0) -> None:
        self._url = f"{base_url}{token}/sendMessage"
        self._client = _client()
        self.pacer = Pacer(TELEGRAM_OVERALL, Limit(1, max(chat_interval, 1.0)))

    async def send(self, external_id: str, text: str) -> None:
        """One message to chat ``external_id``."""
        await self.pacer.send(external_id, lambda: self._send(int(external_id), text))

    async def _send(self, chat_id: int, text: str) -> None:
        answer = await _post(
            self._client, "telegram", self._url, json={"chat_id": chat_id, "text": text}
        )
        body = _json(answer)
        if answer.status_code == 429:
            retry = (body.get("parameters") or {}).get("retry_after", 1)
            raise RateLimited("telegram", float(retry))
        if answer.status_code >= 400 or not body.get("ok"):
            raise SendError(f"telegram {answer.status_code}: {body.get('description', '')}"[:200])

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


class SlackSender:
    """``chat.postMessage`` to the user (a direct message from the app)."""

    def __init__(self, token: str, base_url: str) -> None:
        self._url = f"{base_url}chat.postMessage"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._client = _client()
        self.pacer = Pacer(per_key=SLACK_PER_CONVERSATION)

    async def send(self, external_id: str, text: str) -> None:
        """One direct message to the Slack user of ``external_id`` (``team.user``)."""
        user = external_id.split(".", 1)[-1]
        await self.pacer.send(user, lambda: self._send(user, text))

    async def _send(self, user: str, text: str) -> None:
        answer = await _post(
            self._client,
            "slack",
            self._url,
            json={"channel": user, "text": text},
            headers=self._headers,
        )
        body = _json(answer)
        if answer.status_code == 429 or body.get("error") == "ratelimited":
            raise RateLimited("slack", float(answer.headers.get("Retry-After") or 1))
        if answer.status_code >= 400 or not body.get("ok"):
            raise SendError(f"slack {answer.status_code}: {body.get('error', '')}"[:200])

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


class WebSender:
    """Puts the message in the web chat conversation's inbox, which the open page
    collects (``bot.web_inbox``)."""

    def __init__(self, inbox: Any, own: bool = False) -> None:
        self._inbox = inbox
        self._own = own
        self.pacer = Pacer()

    async def send(self, external_id: str, text: str) -> None:
        """Keep ``text`` for the conversation ``external_id``."""
        try:
            await self._inbox.put(external_id, {"text": text})
        except Unavailable as error:
            raise SendError(f"web chat inbox unavailable ({type(error).__name__})") from None

    async def close(self) -> None:
        """Close the inbox's connections when this sender opened it."""
        if self._own:
            await self._inbox.close()


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def build_senders(settings: bot_settings.Settings, web_inbox: Any = None) -> dict[str, Sender]:
    """A sender per configured channel. The web chat needs the server's inbox
    (``web_inbox``) or Redis: another process's in-memory inbox is out of reach."""
    senders: dict[str, Sender] = {}
    if settings.telegram_token:
        senders["telegram"] = TelegramSender(
            settings.telegram_token, settings.telegram_api_base_url, settings.telegram_chat_interval
        )
    if settings.slack_bot_token:
        senders["slack"] = SlackSender(settings.slack_bot_token, settings.slack_api_base_url)
    if web_inbox is not None:
        senders["web"] = WebSender(web_inbox)
    elif settings.redis_url:
        from bot.web_inbox import WebInbox

        senders["web"] = WebSender(WebInbox(settings.redis_url, "rapport:web:inbox"), own=True)
    return senders
