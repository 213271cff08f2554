"""``python -m bench.workbench``: every workbench page's p95 with a big CRM.

Seeds a fresh CRM with 10,000 conversations (200,000 transcript lines), starts the
workbench on loopback, logs in, loads each page once (the sentence encoder warms up),
then times ``--requests`` loads of each page and prints p50/p95 against the 300 ms goal.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.servers import free_port, stop_processes
from bench.workbench_seed import seed_history

PROJECT = Path(__file__).resolve().parent.parent
GOAL_MS = 300.0
PASSWORD = "bench password 1234"  # noqa: S105 (a throwaway account in a temporary CRM)
PAGES = (
    "/inbox",
    "/intents",
    "/intents/order_status",
    "/training",
    "/insights",
    "/insights?channel=telegram",
    "/insights/conversations.csv",
    "/conversations/1",
)


@dataclass
class WorkbenchServer:
    """A workbench process on a loopback port."""

    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """Stop the process."""
        stop_processes([self.process])


def start_workbench(env: dict[str, str], log_dir: Path, timeout: float = 60) -> WorkbenchServer:
    """Run ``python -m bot workbench`` with ``env`` on a free port; wait until it answers."""
    port = free_port()
    log = log_dir / "workbench.log"
    environment = {
        **os.environ,
        **env,
        "WORKBENCH_PORT": str(port),
        "RASA_TELEMETRY_ENABLED": "false",
    }
    environment["PYTHONPATH"] = str(PROJECT)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "workbench"],
            cwd=PROJECT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the workbench exited: {log.read_text()[-2000:]}")
        try:
            requests.get(f"{url}/login", timeout=2)
            return WorkbenchServer(url, process, log)
        except requests.ConnectionError:
            time.sleep(0.3)
    stop_processes([process])
    raise RuntimeError("the workbench did not start in time")


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if not found:
        raise RuntimeError("no CSRF token on the page")
    return found.group(1)


def log_in(url: str, name: str, password: str, first_page: str = "/intents") -> requests.Session:
    """A requests session logged in to the workbench (landing on ``first_page``)."""
    session = requests.Session()
    form = session.get(f"{url}/login", timeout=10)
    answer = session.post(
        f"{url}/login",
        data={"name": name, "password": password, "csrf": csrf_of(form.text), "next": first_page},
        timeout=120,
    )
    if answer.status_code != 200 or "/login" in answer.url:
        raise RuntimeError(f"login failed: {answer.status_code}")
    return session


def prepare(database_url: str, conversations: int, lines: int) -> int:
    """Migrate, seed the demo CRM, add the history and a trainer; the lines added."""
    from crm_bridge import users
    from crm_bridge.db import session_factory
    from crm_bridge.migrate import upgrade
    from crm_bridge.seed import seed

    upgrade(database_url)
    seed(database_url)
    factory = session_factory(database_url)
    added = seed_history(factory, conversations, lines)
    users.add_user(factory, "bench", "trainer", PASSWORD)
    return added


def time_pages(session: requests.Session, url: str, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per load of each page (after one warm-up load each)."""
    timings: dict[str, list[float]] = {}
    for page in PAGES:
        first = session.get(f"{url}{page}", timeout=120)
        if first.status_code != 200:
            raise RuntimeError(f"{page} answered {first.status_code}")
        timings[page] = []
        for _ in range(repeats):
            started = time.perf_counter()
            answer = session.get(f"{url}{page}", timeout=60)
            timings[page].append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    return timings


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, time, print."""
    parser = argparse.ArgumentParser(prog="python -m bench.workbench", description=__doc__)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=20, help="transcript lines per conversation")
    parser.add_argument("--requests", type=int, default=20, help="timed loads per page")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-workbench-") as tmp:
        folder = Path(tmp)
        database_url = f"sqlite:///{folder / 'crm.db'}"
        started = time.perf_counter()
        added = prepare(database_url, args.conversations, args.lines)
        seconds = time.perf_counter() - started
        print(f"Seeded {args.conversations} conversations, {added} lines in {seconds:.0f} s")
        server = start_workbench(
            {
                "CRM_DATABASE_URL": database_url,
                "RAPPORT_VAR_DIR": str(folder / "var"),
                "RAPPORT_MODELS_DIR": str(folder / "models"),
                "WORKBENCH_RASA_URL": f"http://127.0.0.1:{free_port()}",
            },
            folder,
        )
        try:
            session = log_in(server.url, "bench", PASSWORD)
            timings = time_pages(session, server.url, args.requests)
        finally:
            server.stop()
    print(f"\n{'page':<32} {'p50 ms':>8} {'p95 ms':>8}  goal {GOAL_MS:.0f} ms")
    worst = 0.0
    for page, samples in timings.items():
        p95 = statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]
        worst = max(worst, p95)
        verdict = "ok" if p95 <= GOAL_MS else "SLOW"
        print(f"{page:<32} {statistics.median(samples):8.1f} {p95:8.1f}  {verdict}")
    return 0 if worst <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
