"""``python -m bench.slack_ack``: how long Slack waits for its HTTP ack while the
assistant's custom actions are slow (issue #20; goal: p99 <= 100 ms).

Starts the fake Slack Web API (``tests/fakes/slack_api.py``), a slow action server of
its own (every custom action sleeps ``--action-seconds``, then says "done") and the
bot's servers with Rasa pointed at that slow action server. Sends ``--events`` signed
Events API ``message`` events (direct messages from ``--users`` customers, each
asking about an order, which runs the order-status form's validation, a custom action)
at ``--rate`` per second and times each from sending the request to its HTTP answer
(the ack Slack must get within 3 s). Prints and writes (``bench/results/slack_ack.json``)
p50/p95/p99/max of the acks, how many were acked 200, and how many replies (and "done"
replies from the slow actions) the fake Slack API received within ``--reply-wait``
seconds. Every wait is bounded; everything talks only to 127.0.0.1.

Example:
  python -m bench.slack_ack
  python -m bench.slack_ack --events 400 --rate 40 --action-seconds 2
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from bench.nlu.metrics import percentile
from bench.servers import BotServers, start_bot_servers, stop_processes
from tests.fakes.slack_api import TEAM_ID, FakeSlackApi

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "bench-slack-signing-secret"  # noqa: S105 (the fake's, not a real one)
BOT_TOKEN = "xoxb-bench-token"  # noqa: S105
# Each asks about an order: the order-status form starts and its validation (a custom
# action) runs, so every turn waits for the slow action server at least once.
TEXTS = (
    "where is my order 10001?",
    "where is my order 10002?",
    "can I get the tracking info for 10003",
)
SLOW_ACTION_ANSWER = {"events": [], "responses": [{"text": "done"}]}
REQUEST_TIMEOUT_S = 30
# Request threads per event per second: enough for acks of up to 10 s under way at once,
# so a slow ack never holds back the next send (which would lower the rate unseen).
SENDERS_PER_RATE = 10


@dataclass
class Figures:
    """What one run measured: the ack times and what the fake Slack API received."""

    ack_seconds: list[float]
    acked_200: int
    failed: int
    replies: int
    done_replies: int
    channels_answered: int


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 would make a burst of action calls wait for SYN retries.
    request_queue_size = 128


class SlowActionServer:
    """An action server on 127.0.0.1 whose every action takes ``seconds``, then says "done"."""

    def __init__(self, seconds: float) -> None:
        self.calls = self.abandoned = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.calls += 1
                time.sleep(seconds)
                data = json.dumps(SLOW_ACTION_ANSWER).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    # Rasa gave up waiting (its action timeout): counted, not a traceback.
                    with server._lock:
                        server.abandoned += 1

            def log_message(self, *args: Any) -> None:
                pass  # one line per action would drown the table

        self._server = _Server(("127.0.0.1", 0), Handler)
        # Threads must not keep the benchmark alive if Rasa hangs up mid-sleep.
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Rasa's ``ACTION_ENDPOINT_URL`` for this server."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhook"

    def start(self) -> SlowActionServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def slack_env(api: FakeSlackApi, action_url: str, action_seconds: float) -> dict[str, str]:
    """The bot's environment: Slack on the fake API, Rasa calling the slow actions."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_BASE_URL": api.base_url,
        "ACTION_ENDPOINT_URL": action_url,
        # Well above the action's time (Rasa's clock also runs while its busy event loop
        # lags), so the slow action completes instead of timing out.
        "ACTION_TIMEOUT_SECONDS": str(max(10, math.ceil(action_seconds * 3))),
    }


def message_event(user: str, text: str, event_id: str) -> bytes:
    """A Slack Events API body: ``user``'s direct message ``text``."""
    now = time.time()
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": TEAM_ID,
            "api_app_id": "A1",
            "event_id": event_id,
            "event_time": int(now),
            "event": {
                "type": "message",
                "channel_type": "im",
                "user": user,
                "text": text,
                "channel": f"D{user}",
                "ts": f"{now:.6f}",
                "event_ts": f"{now:.6f}",
            },
        }
    ).encode()


def signed_headers(body: bytes, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's v0 signature: HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    timestamp = str(int(time.time()))
    base = f"v0:{timestamp}:".encode() + body
    signature = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={signature}",
    }


def ack_seconds(servers: BotServers, body: bytes) -> tuple[int, float]:
    """Post one signed event; its HTTP status and the time to the answer (signing not timed)."""
    headers = signed_headers(body)
    url = f"{servers.rasa_url}/webhooks/slack/events"
    started = time.perf_counter()
    try:
        response = requests.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException:
        return 0, time.perf_counter() - started
    return response.status_code, time.perf_counter() - started


def send_events(
    servers: BotServers, events: int, rate: float, users: int
) -> tuple[list[tuple[int, float]], list[str]]:
    """Send ``events`` messages at ``rate`` per second from ``users`` customers; each
    event's (status, ack seconds) and the customers' DM channels."""
    run_id = uuid.uuid4().hex[:8].upper()
    user_ids = [f"U{run_id}{n:04d}" for n in range(users)]
    outcomes: list[tuple[int, float]] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        body = message_event(
            user_ids[index % users], TEXTS[index % len(TEXTS)], f"Ev{run_id}{index:06d}"
        )
        outcome = ack_seconds(servers, body)
        with lock:
            outcomes.append(outcome)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(8, math.ceil(rate * SENDERS_PER_RATE))) as pool:
        for index in range(events):
            # Paced from the start, not from the previous send, so the rate holds even
            # when one submission is late.
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, index)
    # Only the customers who sent something (fewer events than users leaves some out).
    return outcomes, [f"D{user}" for user in user_ids[: min(users, events)]]


def wait_for_replies(
    api: FakeSlackApi, channels: list[str], timeout: float, quiet: float
) -> list[Any]:
    """The replies posted to ``channels``: waits (at most ``timeout`` s) until each has a
    "done" and then nothing new arrived for ``quiet`` s (later turns may still run)."""
    wanted = set(channels)
    deadline = time.monotonic() + timeout
    seen, last_change = -1, time.monotonic()
    while True:
        posts = [
            call
            for call in api.calls_to("chat.postMessage")
            if call.params.get("channel") in wanted
        ]
        if len(posts) != seen:
            seen, last_change = len(posts), time.monotonic()
        done = {call.params["channel"] for call in posts if call.params.get("text") == "done"}
        settled = done >= wanted and time.monotonic() - last_change >= quiet
        if settled or time.monotonic() >= deadline:
            return posts
        time.sleep(0.2)


def measure(
    servers: BotServers,
    api: FakeSlackApi,
    events: int,
    rate: float,
    users: int,
    reply_wait: float,
    action_seconds: float,
) -> Figures:
    """Send the events and collect the ack times and the replies."""
    outcomes, channels = send_events(servers, events, rate, users)
    # Quiet for longer than one action, so a turn still under way is not cut off.
    posts = wait_for_replies(api, channels, reply_wait, quiet=action_seconds + 3)
    return Figures(
        ack_seconds=[seconds for _, seconds in outcomes],
        acked_200=sum(1 for status, _ in outcomes if status == 200),
        failed=sum(1 for status, _ in outcomes if status != 200),
        replies=len(posts),
        done_replies=sum(1 for call in posts if call.params.get("text") == "done"),
        channels_answered=len({call.params["channel"] for call in posts}),
    )


def report(figures: Figures, actions: SlowActionServer, args: argparse.Namespace) -> dict[str, Any]:
    """The JSON report: settings and figures (times in milliseconds)."""
    ms = [seconds * 1000 for seconds in figures.ack_seconds]
    return {
        "events": args.events,
        "rate_per_s": args.rate,
        "users": args.users,
        "action_seconds": args.action_seconds,
        "ack_p50_ms": round(percentile(ms, 50), 1),
        "ack_p95_ms": round(percentile(ms, 95), 1),
        "ack_p99_ms": round(percentile(ms, 99), 1),
        "ack_max_ms": round(max(ms), 1),
        "acked_200": figures.acked_200,
        "failed": figures.failed,
        "replies": figures.replies,
        "done_replies": figures.done_replies,
        "users_answered": figures.channels_answered,
        "action_calls": actions.calls,
        "actions_abandoned": actions.abandoned,
        "reply_wait_s": args.reply_wait,
    }


@contextmanager
def running_setup(
    model: Path, workdir: Path, action_seconds: float
) -> Iterator[tuple[BotServers, FakeSlackApi, SlowActionServer]]:
    """The fake Slack API, the slow action server and the bot's servers, stopped after."""
    api = FakeSlackApi()
    api.start()
    actions = SlowActionServer(action_seconds).start()
    try:
        env = slack_env(api, actions.url, action_seconds)
        servers, processes = start_bot_servers(model, workdir, env)
        try:
            yield servers, api, actions
        finally:
            stop_processes(processes)
    finally:
        actions.stop()
        api.stop()


def run(model: Path, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, measure, stop; the report."""
    with running_setup(model, workdir, args.action_seconds) as (servers, api, actions):
        figures = measure(
            servers, api, args.events, args.rate, args.users, args.reply_wait, args.action_seconds
        )
    return report(figures, actions, args)


def main(argv: list[str] | None = None) -> int:
    """CLI: run the benchmark, print the table and write the JSON report."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.slack_ack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, help="model archive (default: the bot's own)")
    parser.add_argument("--events", type=int, default=200, help="signed events sent")
    parser.add_argument("--rate", type=float, default=20, help="events per second")
    parser.add_argument("--users", type=int, default=50, help="customers sending them")
    parser.add_argument("--action-seconds", type=float, default=2, help="each action's time")
    parser.add_argument("--reply-wait", type=float, default=180, help="most s to wait for replies")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if min(args.events, args.users) < 1 or min(args.rate, args.action_seconds) <= 0:
        parser.error("--events and --users must be >= 1, --rate and --action-seconds > 0")
    if args.model is None:
        from bot.train import train_if_needed

        args.model = train_if_needed()
    with tempfile.TemporaryDirectory(prefix="bench-slack-ack-") as workdir:
        result = run(args.model, Path(workdir), args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "slack_ack.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
