"""A stand-in for the Slack Web API (auth.test, chat.postMessage), optionally slow."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.http_api import RecordingApi

BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM_ID = "T0RAPPORT"


class FakeSlackApi(RecordingApi):
    """``base_url`` goes to slack_sdk's ``AsyncWebClient(base_url=...)``."""

    prefix = "/api/"

    def __init__(self) -> None:
        super().__init__()
        self.post_delay_seconds = 0.0
        self.messages_posted = 0

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/api/"

    def respond(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "chat.postMessage" and self.post_delay_seconds:
            time.sleep(self.post_delay_seconds)
        with self.lock:
            self.messages_posted += 1
            ts = f"{int(time.time())}.{self.messages_posted:06d}"  # unique, like Slack's
        # The ts we answer with is recorded too (as ``_ts``), as Slack's id of the message.
        self.record(method, {**params, "_ts": ts} if method == "chat.postMessage" else params)
        if method == "auth.test":
            return 200, {
                "ok": True,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "team_id": TEAM_ID,
                "user": "rapport",
                "team": "Rapport",
                "url": "https://rapport.example/",
            }
        if method == "chat.postMessage":
            return 200, {"ok": True, "channel": params.get("channel"), "ts": ts}
        return 200, {"ok": True}
