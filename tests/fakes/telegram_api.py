"""A stand-in for the Telegram Bot API: answers like Telegram, can answer the next
sendMessage calls with a 429 "retry after", and can answer chosen methods late."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.http_api import Call, RecordingApi

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Rapport", "username": "rapport_demo_bot"}


class FakeTelegramApi(RecordingApi):
    """``base_url`` goes to python-telegram-bot's ``Bot(base_url=...)``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.prefix = f"/bot{token}/"
        self.rate_limit_next_sends = 0
        self.retry_after_seconds = 1
        self._message_id = 1000
        self._pending_updates: list[dict[str, Any]] = []
        # Seconds to wait before answering a method (a slow Telegram at the bot's start).
        self.answer_delays: dict[str, float] = {}

    def queue_update(self, update: dict[str, Any]) -> None:
        """Hand an update to the next getUpdates call (polling mode)."""
        with self.lock:
            self._pending_updates.append(update)

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/bot"

    def sent_to(self, chat_id: int, count: int = 0) -> list[Call]:
        """sendMessage calls to a chat (waiting for ``count`` of them when given)."""
        if count:
            return self.wait_for("sendMessage", count, chat_id=chat_id)
        return self.calls_to("sendMessage", chat_id=chat_id)

    def respond(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # Each request has its own thread (ThreadingHTTPServer): a late answer holds up
        # only its caller. The call is recorded when answered.
        time.sleep(self.answer_delays.get(method, 0.0))
        if method == "sendMessage":
            with self.lock:
                limited = self.rate_limit_next_sends > 0
                if limited:
                    self.rate_limit_next_sends -= 1
            if limited:
                self.record("sendMessage#429", params)
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {self.retry_after_seconds}",
                    "parameters": {"retry_after": self.retry_after_seconds},
                }
        self.record(method, params)
        return 200, {"ok": True, "result": self._result(method, params)}

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "sendMessage":
            with self.lock:
                self._message_id += 1
                message_id = self._message_id
            return {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": params.get("chat_id"), "type": "private"},
                "from": BOT_USER,
                "text": params.get("text", ""),
            }
        if method == "getUpdates":
            # A short long-poll: wait a moment for an update rather than spin the client.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                with self.lock:
                    offset = int(params.get("offset") or 0)
                    ready = [u for u in self._pending_updates if u["update_id"] >= offset]
                    self._pending_updates = ready
                    if ready:
                        return ready
                time.sleep(0.05)
            return []
        return True
