"""Start the assistant's action and Rasa servers on loopback ports, with a fresh seeded
CRM: the end-to-end tests and the stress benchmark (``bench.stress``) run against these."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]

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
    # Every Rasa server's URL, ``rasa_url`` first (several with ``rasa_processes``).
    rasa_urls: list[str] = field(default_factory=list)
    # Every customer text the tests sent, to check that none of them reached a log.
    said: set[str] = field(default_factory=set)

    @property
    def webhook(self) -> str:
        return f"{self.rasa_url}/webhooks/rest/webhook"

    def say(self, sender: str, text: str) -> list[dict]:
        """Send one customer message over the REST channel; return the bot's replies."""
        self.said.add(text)
        response = requests.post(self.webhook, json={"sender": sender, "message": text}, timeout=60)
        assert response.status_code == 200, response.text
        replies: list[dict] = response.json()
        return replies


def _wait_until_up(url: str, processes: list[subprocess.Popen], log_dir: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                logs = "\n".join(p.read_text()[-3000:] for p in log_dir.glob("*.log"))
                raise RuntimeError(f"a server exited early ({process.args!r}):\n{logs}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not come up in {STARTUP_TIMEOUT_SECONDS} s")


def start_bot_servers(
    model: Path,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    crm_url: str = "",
    rasa_processes: int = 1,
) -> tuple[BotServers, list[subprocess.Popen]]:
    """Migrate + seed a CRM (SQLite in ``workdir`` unless ``crm_url`` is given) and start
    the action server and ``rasa_processes`` Rasa servers (more than one needs the shared
    stores: ``REDIS_URL`` and a CRM they all reach). The processes are returned in that
    order: the action server, then the Rasa servers in the order of ``rasa_urls``."""
    crm_url = crm_url or f"sqlite:///{workdir / 'crm.db'}"
    rasa_ports = [free_port() for _ in range(rasa_processes)]
    rasa_port, action_port = rasa_ports[0], free_port()
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
    rasa = [sys.executable, "-m", "bot", "rasa-server", "--model", str(model)]
    # name -> (command, the environment's changes): each Rasa server listens on its port.
    commands = {
        "actions": (
            [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(action_port)],
            {},
        ),
        **{
            "rasa" if index == 0 else f"rasa-{index + 1}": (rasa, {"RASA_PORT": str(port)})
            for index, port in enumerate(rasa_ports)
        },
    }
    processes = [
        subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**env, **changes},
            stdout=(log_dir / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for name, (command, changes) in commands.items()
    ]
    servers = BotServers(
        rasa_url=f"http://127.0.0.1:{rasa_port}",
        action_url=f"http://127.0.0.1:{action_port}",
        crm_url=crm_url,
        log_dir=log_dir,
        env=env,
        rasa_urls=[f"http://127.0.0.1:{port}" for port in rasa_ports],
    )
    try:
        _wait_until_up(f"{servers.action_url}/health", processes, log_dir)
        for url in servers.rasa_urls:
            _wait_until_up(f"{url}/webhooks/rest/", processes, log_dir)
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
