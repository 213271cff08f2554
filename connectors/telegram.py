"""Telegram channel on python-telegram-bot: webhook (verified by Telegram's secret token)
or long polling, one processing of each update, replies within Telegram's rate limits.

Configured from the environment (see .env.example): TELEGRAM_TOKEN enables it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

from rasa.core.channels.channel import OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from bot import settings as bot_settings
from connectors.dedupe import Deduplicator
from connectors.inbound import OnNewMessage, ScreenedInputChannel
from connectors.refusals import refuse
from connectors.telegram_adapter import Incoming, chat_id_of, incoming_message
from crm_bridge.errors import MessageNotTaken

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  (a header name)
GLOBAL_INTERVAL_SECONDS = 1 / 30  # Telegram: about 30 messages per second per bot
SEND_ATTEMPTS = 3
POLL_TIMEOUT_SECONDS = 25
# How long a webhook delivery that arrives while the bot is still starting waits for it.
STARTUP_WAIT_SECONDS = 30


class SendPacer:
    """Spaces messages: at most one per ``chat_interval`` per chat, ~30/s overall."""

    def __init__(self, chat_interval: float) -> None:
        self._chat_interval = chat_interval
        self._next_chat: dict[int, float] = {}
        self._next_global = 0.0
        self._lock = asyncio.Lock()

    async def wait(self, chat_id: int) -> None:
        """Sleep until a message to ``chat_id`` may go out, and book its slot."""
        async with self._lock:
            now = time.monotonic()
            at = max(now, self._next_chat.get(chat_id, 0.0), self._next_global)
            self._next_chat[chat_id] = at + self._chat_interval
            self._next_global = at + GLOBAL_INTERVAL_SECONDS
        if at > now:
            await asyncio.sleep(at - now)


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramOutput(OutputChannel):
    """Sends the assistant's replies through the Bot API (buttons as inline keyboards)."""

    @classmethod
    def name(cls) -> str:
        return "telegram"

    def __init__(self, bot: Bot, pacer: SendPacer) -> None:
        self.bot = bot
        self.pacer = pacer

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._send(chat_id_of(recipient_id), text, None)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        rows = [
            [InlineKeyboardButton(b["title"], callback_data=b["payload"][:64]) for b in pair]
            for pair in (buttons[i : i + 2] for i in range(0, len(buttons), 2))
        ]
        await self._send(chat_id_of(recipient_id), text, InlineKeyboardMarkup(rows))

    async def _send(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            await self.pacer.wait(chat_id)
            try:
                await self.bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)
                return
            except RetryAfter as error:
                delay = _seconds(error.retry_after)
                logger.warning("Telegram asked to wait %.1f s (429) before sending", delay)
                await asyncio.sleep(delay)
            except NetworkError as error:
                logger.warning(
                    "Telegram send failed (%s), attempt %d", type(error).__name__, attempt
                )
                await asyncio.sleep(attempt)
        logger.error(
            "Gave up sending a message to a Telegram chat after %d attempts", SEND_ATTEMPTS
        )


class TelegramChannel(ScreenedInputChannel):
    """``POST /webhooks/telegram/webhook`` (and polling mode); disabled without TELEGRAM_TOKEN."""

    @classmethod
    def name(cls) -> str:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> TelegramChannel:
        return cls()

    def __init__(self) -> None:
        self.settings = bot_settings.current()
        self.enabled = bool(self.settings.telegram_token)
        self.max_message_chars = self.settings.max_message_chars
        # Without a configured secret, each start sets a fresh random one with setWebhook.
        self.secret = self.settings.telegram_secret_token or secrets.token_urlsafe(32)
        self.dedupe = Deduplicator(self.settings.redis_url, "rapport:telegram:update")
        self.pacer = SendPacer(self.settings.telegram_chat_interval)
        self.bot: Bot | None = None
        self._polling: asyncio.Task | None = None
        # Set once the bot is initialised: Sanic accepts requests before its
        # after_server_start listeners finish, and an update taken before would be lost.
        self.ready = asyncio.Event()

    def _make_bot(self) -> Bot:
        return Bot(
            self.settings.telegram_token,
            base_url=self.settings.telegram_api_base_url,
            request=HTTPXRequest(connect_timeout=5, read_timeout=10, write_timeout=10),
            get_updates_request=HTTPXRequest(read_timeout=POLL_TIMEOUT_SECONDS + 10),
        )

    async def start(self, on_new_message: OnNewMessage) -> None:
        """Connect the bot; register the webhook or start polling."""
        self.bot = self._make_bot()
        await self.bot.initialize()
        if self.settings.telegram_mode == "polling":
            await self.bot.delete_webhook()
            self._polling = asyncio.create_task(self._poll(on_new_message))
        elif self.settings.telegram_webhook_url:
            await self.bot.set_webhook(
                self.settings.telegram_webhook_url,
                secret_token=self.secret,
                allowed_updates=["message", "edited_message", "callback_query"],
            )
        self.ready.set()
        logger.info("Telegram channel ready (%s mode)", self.settings.telegram_mode)

    async def wait_until_ready(self, seconds: float) -> bool:
        """Whether the bot is initialised, waiting up to ``seconds`` for it."""
        try:
            await asyncio.wait_for(self.ready.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def push(
        self, sender_id: str, text: str, buttons: list[dict[str, Any]] | None = None
    ) -> None:
        """Send a message to a customer outside a turn (e.g. an agent's reply)."""
        if self.bot is None:
            raise RuntimeError("Telegram is not started")
        output = TelegramOutput(self.bot, self.pacer)
        if buttons:
            await output.send_text_with_buttons(sender_id, text, buttons)
        else:
            await output.send_text_message(sender_id, text)

    async def stop(self) -> None:
        """Stop polling and close the bot's HTTP client."""
        self.ready.clear()
        if self._polling is not None:
            self._polling.cancel()
        if self.bot is not None:
            await self.bot.shutdown()

    async def handle_update(self, data: dict[str, Any], on_new_message: OnNewMessage) -> str:
        """Process one update once; returns what happened (for the HTTP answer and logs)."""
        assert self.bot is not None
        update = Update.de_json(data, self.bot)
        if update is None:
            return "ignored"
        if not await self.dedupe.first_time(str(update.update_id)):
            return "duplicate"
        incoming = incoming_message(update, self.bot.username, self.bot.id)
        if incoming is None:
            return "ignored"
        if incoming.callback_query_id:
            await self._answer_button(incoming)
        output = TelegramOutput(self.bot, self.pacer)
        try:
            await on_new_message(
                UserMessage(
                    incoming.text,
                    output,
                    incoming.sender_id,
                    input_channel=self.name(),
                    metadata=incoming.metadata,
                )
            )
        except MessageNotTaken as error:
            # The update is taken (Telegram would not re-send it after a 200), the
            # message is not: the customer is asked to send it again.
            await output.send_text_message(incoming.sender_id, error.customer_text)
            return "not taken"
        return "processed"

    async def _answer_button(self, incoming: Incoming) -> None:
        assert self.bot is not None and incoming.callback_query_id is not None
        try:
            await self.bot.answer_callback_query(incoming.callback_query_id)
        except TelegramError as error:
            # The spinner on the customer's button stops by itself; the message still counts.
            logger.warning("answerCallbackQuery failed: %s", type(error).__name__)

    async def _poll(self, on_new_message: OnNewMessage) -> None:
        assert self.bot is not None
        offset = None
        while True:
            try:
                updates = await self.bot.get_updates(offset=offset, timeout=POLL_TIMEOUT_SECONDS)
            except TelegramError as error:
                logger.warning("getUpdates failed (%s); retrying", type(error).__name__)
                await asyncio.sleep(2)
                continue
            for update in updates:
                offset = update.update_id + 1
                try:
                    await self.handle_update(update.to_dict(), on_new_message)
                except Exception:
                    logger.exception("A Telegram update failed; continuing with the next")

    def routes(self, on_new_message: OnNewMessage) -> Blueprint:
        """Health, the webhook, and start/stop listeners."""
        telegram = Blueprint("rapport_telegram", __name__)

        @telegram.listener("after_server_start")
        async def start(app: Any, loop: Any) -> None:
            if self.enabled:
                await self.start(on_new_message)

        @telegram.listener("before_server_stop")
        async def stop(app: Any, loop: Any) -> None:
            if self.enabled:
                await self.stop()

        @telegram.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok" if self.enabled else "disabled"})

        @telegram.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> HTTPResponse:
            if not self.enabled:
                return refuse(request, 404, "Telegram is not configured")
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                return refuse(request, 401, "bad secret token")
            if not await self.wait_until_ready(STARTUP_WAIT_SECONDS):
                # Nothing was taken: Telegram re-sends the update after a 5xx.
                return refuse(request, 503, "starting up, try again")
            try:
                data = json.loads(request.body or b"")
                if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                    raise ValueError("not an update")
            except ValueError:
                return refuse(request, 400, "The body must be a Telegram update.")
            try:
                outcome = await self.handle_update(data, on_new_message)
            except Exception:
                # Answer 200 anyway: a 5xx makes Telegram re-send the same update for hours.
                logger.exception("Failed to process a Telegram update")
                outcome = "failed"
            return response.json({"status": outcome})

        return telegram
