"""End-to-end fixtures: a trained model (shared by the whole run) and real Rasa + action
servers on loopback ports, with a fresh seeded SQLite CRM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from bot.settings import PROJECT_ROOT
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.telegram_api import FakeTelegramApi

STARTUP_TIMEOUT_SECONDS = 240


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class BotServers:
    """Handles for the running servers of one test session."""

    rasa_url: str
    action_url: str
    crm_url: str
    log_dir: Path
    env: dict[str, str]

    @property
    def webhook(self) -> str:
        return f"{self.rasa_url}/webhooks/rest/webhook"

    def say(self, sender: str, text: str) -> list[dict]:
        """Send one customer message over the REST channel; return the bot's replies."""
        response = requests.post(self.webhook, json={"sender": sender, "message": text}, timeout=60)
        assert response.status_code == 200, response.text
        replies: list[dict] = response.json()
        return replies


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """Train once per run (or reuse the model whose fingerprint matches the inputs)."""
    from bot.train import train_if_needed

    return train_if_needed()


def _wait_until_up(url: str, processes: list[subprocess.Popen], log_dir: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                logs = "\n".join(p.read_text()[-3000:] for p in log_dir.glob("*.log"))
                raise RuntimeError(f"a server exited early ({process.args}):\n{logs}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not come up in {STARTUP_TIMEOUT_SECONDS} s")


def start_bot_servers(
    model: Path, workdir: Path, extra_env: dict[str, str] | None = None, crm_url: str = ""
) -> tuple[BotServers, list[subprocess.Popen]]:
    """Migrate + seed a CRM (SQLite in ``workdir`` unless ``crm_url`` is given) and start
    the action and Rasa servers."""
    crm_url = crm_url or f"sqlite:///{workdir / 'crm.db'}"
    rasa_port, action_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "RASA_TELEMETRY_ENABLED": "false",
        "CRM_DATABASE_URL": crm_url,
        "TRACKER_DATABASE_URL": f"sqlite:///{workdir / 'tracker.db'}",
        "RAPPORT_VAR_DIR": str(workdir),
        "RASA_PORT": str(rasa_port),
        "ACTION_PORT": str(action_port),
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{action_port}/webhook",
        "SANIC_HOST": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    for key in ("REDIS_URL", "RABBITMQ_URL", "TELEGRAM_TOKEN", "SLACK_BOT_TOKEN"):
        if key not in (extra_env or {}):
            env.pop(key, None)
    for command in ("migrate", "seed"):
        subprocess.run(
            [sys.executable, "-m", "crm_bridge", command], env=env, cwd=PROJECT_ROOT, check=True
        )
    log_dir = workdir / "logs"
    log_dir.mkdir(exist_ok=True)
    commands = {
        "actions": [sys.executable, "-m", "rasa_sdk", "--actions", "actions",
                    "--port", str(action_port)],
        "rasa": [sys.executable, "-m", "bot", "rasa-server", "--model", str(model)],
    }  # fmt: skip
    processes = [
        subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=(log_dir / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for name, command in commands.items()
    ]
    servers = BotServers(
        rasa_url=f"http://127.0.0.1:{rasa_port}",
        action_url=f"http://127.0.0.1:{action_port}",
        crm_url=crm_url,
        log_dir=log_dir,
        env=env,
    )
    try:
        _wait_until_up(f"{servers.action_url}/health", processes, log_dir)
        _wait_until_up(f"{servers.rasa_url}/webhooks/rest/", processes, log_dir)
    except Exception:
        stop_processes(processes)
        raise
    return servers, processes


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """Terminate the servers (Rasa flushes its event broker on SIGTERM)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


TELEGRAM_TOKEN = "123456:TEST-token"
TELEGRAM_SECRET = "telegram-secret-for-tests"


@pytest.fixture(scope="session")
def fake_telegram() -> Iterator[FakeTelegramApi]:
    """The Telegram Bot API stand-in the servers talk to."""
    api = FakeTelegramApi(TELEGRAM_TOKEN).start()
    yield api
    api.stop()


SLACK_SIGNING_SECRET = "slack-signing-secret-for-tests"
AGENT_API_TOKEN = "agent-api-token-for-tests"
SLACK_AGENT_CHANNEL = "CAGENTS0001"


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlackApi]:
    """The Slack Web API stand-in the servers talk to."""
    api = FakeSlackApi().start()
    yield api
    api.stop()


@pytest.fixture(scope="session")
def bot_servers(
    trained_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    fake_telegram: FakeTelegramApi,
    fake_slack: FakeSlackApi,
) -> Iterator[BotServers]:
    """Rasa + action servers with the embedded defaults (SQLite CRM, in-process log),
    the web chat, and Telegram and Slack pointed at their fake APIs."""
    channels_env = {
        "AGENT_API_TOKEN": AGENT_API_TOKEN,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_API_BASE_URL": fake_slack.base_url,
        "SLACK_AGENT_CHANNEL": SLACK_AGENT_CHANNEL,
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test/webhooks/telegram/webhook",
        "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.05",
    }
    servers, processes = start_bot_servers(
        trained_model, tmp_path_factory.mktemp("bot"), channels_env
    )
    yield servers
    stop_processes(processes)
