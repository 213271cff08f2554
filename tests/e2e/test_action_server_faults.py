"""The action server and Redis die, hang and come back while customers talk (issue #20).

Real Rasa and action servers on 127.0.0.1 (ACTION_TIMEOUT_SECONDS=2) with their tracker
and lock stores in a Redis of their own: a killed action server gets the customer a
polite "having trouble" answer with a person offered, at once; a hung one at its
deadline, while the conversation's next message waits its turn; a stopped Redis gets
"please send it again" instead of a silently new conversation; and the conversation
goes on, one history, when each is back.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from bench.servers import BotServers, free_port, start_bot_servers, stop_processes
from crm_bridge.handoff import HandoffDesk
from crm_bridge.sql_gateway import SqlCrmGateway
from tests.e2e.conftest import assert_no_customer_text_in_logs
from tests.e2e.test_conversations import inbound, interactions_of

pytestmark = pytest.mark.e2e

TROUBLE = "having trouble doing that right now"
# Bounds that tell "gave up" from "hung" (Rasa's own wait is five minutes); not goals.
KILLED_BOUND_SECONDS = 2.0
HUNG_BOUND_SECONDS = 2 + 6


class PrivateRedis:
    """A redis-server of the test's own on a free port, persisting to its folder, so it
    can be stopped and started without touching the machine's shared Redis."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always"),
                *("--save", ""),
            ],
            stdout=(self.folder / "redis.log").open("a"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.2)
        raise AssertionError("the private Redis did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


class Faulty:
    """The running servers plus ways to stop and restart the action server and Redis."""

    def __init__(
        self, servers: BotServers, processes: list[subprocess.Popen], redis: PrivateRedis
    ) -> None:
        self.servers = servers
        self.processes = processes
        self.redis = redis

    @property
    def action_port(self) -> int:
        port = urlsplit(self.servers.action_url).port
        assert port is not None
        return port

    def kill_actions(self) -> None:
        actions = self.processes[0]
        actions.send_signal(signal.SIGKILL)
        actions.wait(10)

    def start_actions(self) -> None:
        log = (self.servers.log_dir / "actions-restarted.log").open("a")
        command = [sys.executable, "-m", "rasa_sdk", "--actions", "actions"]
        self.processes[0] = subprocess.Popen(
            [*command, "--port", str(self.action_port)],
            cwd=Path(__file__).resolve().parents[2],
            env=self.servers.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.servers.action_url}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        raise AssertionError("the action server did not come back")


@pytest.fixture(scope="module")
def faulty(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    redis = PrivateRedis(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        servers, processes = start_bot_servers(
            trained_model,
            tmp_path_factory.mktemp("faults"),
            {"ACTION_TIMEOUT_SECONDS": "2", "REDIS_URL": redis.url},
        )
        yield Faulty(servers, processes, redis)
        stop_processes(processes)
        assert_no_customer_text_in_logs(servers)
    finally:
        redis.stop()


def alice(servers: BotServers) -> str:
    """A fresh REST sender linked (proven) to Alice, who owns order 10001."""
    sender = f"e2e-faults-{uuid.uuid4().hex[:8]}"
    gateway = SqlCrmGateway.from_url(servers.crm_url)
    contact_id = gateway.verify_order_email("10001", "alice@example.com").contact_id
    gateway.link_identity("rest", sender, contact_id, proof="link_token")
    return sender


def text_of(replies: list[dict]) -> str:
    return " ".join(reply.get("text", "") for reply in replies)


def offers_a_person(replies: list[dict]) -> bool:
    return any(
        button.get("payload") == "/request_human"
        for reply in replies
        for button in reply.get("buttons") or []
    )


def timed_say(servers: BotServers, sender: str, text: str) -> tuple[list[dict], float, float]:
    started = time.monotonic()
    replies = servers.say(sender, text)
    return replies, time.monotonic() - started, time.monotonic()


def test_a_killed_action_server_gets_a_polite_answer_and_the_talk_goes_on(
    faulty: Faulty,
) -> None:
    servers = faulty.servers
    sender = alice(servers)
    assert "DPD-5521" in text_of(servers.say(sender, "where is my order 10001?"))

    faulty.kill_actions()
    try:
        replies, waited, _ = timed_say(servers, sender, "where is my order 10001?")
        assert TROUBLE in text_of(replies) and offers_a_person(replies)
        assert waited < KILLED_BOUND_SECONDS
    finally:
        faulty.start_actions()
    assert "DPD-5521" in text_of(servers.say(sender, "where is my order 10001?"))


def test_a_person_is_found_while_the_action_server_is_down(faulty: Faulty) -> None:
    """The trouble answer's "Talk to a person" works without the action server: the Rasa
    side asks the handoff service itself."""
    servers = faulty.servers
    sender = alice(servers)
    servers.say(sender, "hi")
    faulty.kill_actions()
    try:
        replies = servers.say(sender, "/request_human")
    finally:
        faulty.start_actions()
    assert "passed your conversation to our support team" in text_of(replies)
    handoff = HandoffDesk(servers.crm_url).ownership(sender).handoff
    assert handoff is not None and handoff.channel == "rest"


class SlowActions(BaseHTTPRequestHandler):
    """Stands in for an action server whose action takes far longer than the timeout."""

    running = 0
    most_at_once = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most_at_once = max(cls.most_at_once, cls.running)
        try:
            time.sleep(6)
            body = b'{"events": [], "responses": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # Rasa gave up and closed the connection, as intended
        finally:
            with cls.lock:
                cls.running -= 1

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_hung_action_answers_at_its_deadline_and_the_next_message_waits(
    faulty: Faulty,
) -> None:
    servers = faulty.servers
    sender = alice(servers)
    servers.say(sender, "hi")
    faulty.kill_actions()
    slow = ThreadingHTTPServer(("127.0.0.1", faulty.action_port), SlowActions)
    thread = threading.Thread(target=slow.serve_forever, daemon=True)
    thread.start()
    results: dict[str, tuple[list[dict], float, float]] = {}
    try:
        first = threading.Thread(
            target=lambda: results.update(
                first=timed_say(servers, sender, "where is my order 10001?")
            )
        )
        first.start()
        time.sleep(0.5)  # the second message arrives while the first one's action hangs
        results["second"] = timed_say(servers, sender, "thanks!")
        first.join(60)
    finally:
        slow.shutdown()
        slow.server_close()
        faulty.start_actions()
    replies, waited, first_done = results["first"]
    assert TROUBLE in text_of(replies) and offers_a_person(replies)
    assert waited < HUNG_BOUND_SECONDS
    _, _, second_done = results["second"]
    assert second_done >= first_done  # handled after the first, not beside it
    assert "DPD-5521" in text_of(servers.say(sender, "where is my order 10001?"))


def test_a_stopped_redis_asks_for_the_message_again_and_keeps_one_history(
    faulty: Faulty,
) -> None:
    servers = faulty.servers
    sender = alice(servers)
    servers.say(sender, "hi")
    faulty.redis.stop()
    try:
        answer = requests.post(
            servers.webhook,
            json={"sender": sender, "message": "where is my order 10001?"},
            timeout=60,
        )
    finally:
        faulty.redis.start()
    assert answer.status_code == 503
    assert answer.json()["error"].endswith("Please send it again.")
    assert answer.json()["retry"] == "true"

    # Back: the same conversation, with nothing lost and nothing doubled.
    assert "DPD-5521" in text_of(servers.say(sender, "where is my order 10001?"))
    [interaction] = interactions_of(servers, sender, lambda d: bool(d) and len(inbound(d[0])) == 2)
    assert inbound(interaction) == ["hi", "where is my order 10001?"]
