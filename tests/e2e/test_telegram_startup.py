"""A Telegram update that reaches the server while the bot is still starting (Sanic
serves requests before its start-up listeners finish) is answered once the bot is
ready, not lost. Its own server, whose Telegram stand-in is slow to register the
webhook, so the window is seconds wide."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    BotServers,
    start_bot_servers,
    stop_processes,
)
from tests.e2e.test_telegram import message_update, new_id, post
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.e2e

SET_WEBHOOK_DELAY_SECONDS = 6.0


@pytest.fixture(scope="module")
def slow_telegram() -> Iterator[FakeTelegramApi]:
    api = FakeTelegramApi(TELEGRAM_TOKEN).start()
    api.answer_delays["setWebhook"] = SET_WEBHOOK_DELAY_SECONDS
    yield api
    api.stop()


@pytest.fixture(scope="module")
def starting_servers(
    trained_model: Path, tmp_path_factory: pytest.TempPathFactory, slow_telegram: FakeTelegramApi
) -> Iterator[BotServers]:
    env = {
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE_URL": slow_telegram.base_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/webhooks/telegram/webhook",
        "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.05",
    }
    # Returns as soon as the server answers HTTP, while setWebhook is still pending.
    servers, processes = start_bot_servers(trained_model, tmp_path_factory.mktemp("slow"), env)
    yield servers
    stop_processes(processes)


def test_an_update_that_arrives_during_start_up_is_answered(
    starting_servers: BotServers, slow_telegram: FakeTelegramApi
) -> None:
    chat = new_id()
    sent_at = time.monotonic()
    answer = post(starting_servers, message_update(chat, "hi"))
    assert answer.status_code == 200, answer.text
    # The update was taken before the bot was ready, and held until it was.
    registrations = slow_telegram.calls_to("setWebhook")
    assert registrations, "the update was handled before the bot had started"
    assert sent_at < registrations[0].at <= time.monotonic()
    [reply] = slow_telegram.sent_to(chat, count=1)
    assert reply.params["text"]
