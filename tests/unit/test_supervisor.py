"""bot.supervisor with real child processes: a crashed child is restarted with back-off
while the others keep running, and stopping ends them all.

Every child is a small ``python -c`` script that appends ``<pid> <monotonic time>`` to
its own file each time it starts, so the tests count starts and measure the gaps.
Durations are a fraction of a second through the constructor; every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.settings import PROJECT_ROOT
from bot.supervisor import Backoff, Supervisor, describe_exit

RECORD_START = """
import os, sys, time
with open(sys.argv[1], "a") as starts:
    starts.write(f"{os.getpid()} {time.monotonic()}\\n")
"""
FOREVER = "while True: time.sleep(1)\n"
CRASHES = "time.sleep(0.2); sys.exit(3)\n"
IGNORES_SIGTERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
# Starts 1-3 crash at once, start 4 stays up longer than stable_after (1.5 s), then crashes.
FLAKY = """
count = len(open(sys.argv[1]).readlines())
time.sleep(0.1 if count < 4 else 1.8)
if count <= 4:
    sys.exit(3)
while True: time.sleep(1)
"""
SECRET = "s3cr3t-never-logged"
WAIT_LIMIT = 15.0


def child(starts: Path, body: str, setup: str = "") -> list[str]:
    """A command that records each start in ``starts`` and then runs ``body``."""
    # The secret stands in an argument and the environment: neither may reach the log.
    return [sys.executable, "-c", setup + RECORD_START + body, str(starts), SECRET]


def started(starts: Path) -> list[tuple[int, float]]:
    """(pid, monotonic time) of each start recorded in ``starts``."""
    if not starts.exists():
        return []
    lines = [line.split() for line in starts.read_text().splitlines()]
    return [(int(pid), float(at)) for pid, at in lines]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {WAIT_LIMIT} s waiting until {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def make_supervisor(
    tmp_path: Path, children: dict[str, str | list[str]], **options: Any
) -> Supervisor:
    """A supervisor of ``children``: a command, or the body of a child that records its
    starts in ``tmp_path / name``."""
    commands = {
        name: child(tmp_path / name, body) if isinstance(body, str) else body
        for name, body in children.items()
    }
    settings: dict[str, Any] = {
        "backoff": Backoff(initial=0.2, cap=0.8, stable_after=5.0, quick_exit=2.0, alarm_after=99),
        "poll_seconds": 0.02,
        "stop_grace_seconds": 0.5,
        **options,
    }
    env = {**os.environ, "RAPPORT_TEST_SECRET": SECRET}
    return Supervisor(commands, env, tmp_path, **settings)


@contextmanager
def supervising(supervisor: Supervisor) -> Iterator[Supervisor]:
    """Run ``supervisor`` in a thread; on leaving, stop it as SIGTERM would and wait."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()), daemon=True)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.request_stop()
        thread.join(WAIT_LIMIT)
    assert not thread.is_alive()
    assert result == [0]


def scheduled(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[int, float]]:
    """(attempt, delay) of each restart of ``name`` the log announced."""
    pattern = re.compile(rf"^{name} .* restart attempt (\d+) in ([\d.]+) s$")
    matches = (pattern.match(record.getMessage()) for record in list(caplog.records))
    return [(int(m[1]), float(m[2])) for m in matches if m]


@pytest.fixture(autouse=True)
def supervisor_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.supervisor")


def test_the_delay_doubles_up_to_the_cap() -> None:
    assert [Backoff().delay(attempt) for attempt in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_an_exit_is_described_by_its_code_or_signal() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def test_a_crashed_child_is_restarted_with_growing_delays_while_the_others_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crasher, steady = tmp_path / "crasher", tmp_path / "steady"
    supervisor = make_supervisor(tmp_path, {"crasher": CRASHES, "steady": FOREVER})
    with supervising(supervisor):
        wait_until(lambda: len(started(steady)) == 1, "steady started")
        steady_pid = supervisor.pids()["steady"]
        wait_until(lambda: len(started(crasher)) >= 5, "crasher started 5 times")
        assert supervisor.pids()["steady"] == steady_pid == started(steady)[0][0]

    assert len(started(steady)) == 1
    delays = scheduled(caplog, "crasher")[:4]
    assert delays == [(1, 0.2), (2, 0.4), (3, 0.8), (4, 0.8)]
    times = [at for _, at in started(crasher)]
    for attempt, delay in delays:
        # Each run lasts 0.2 s, then the restart waits its delay.
        assert times[attempt] - times[attempt - 1] >= 0.2 + delay
    assert "crasher exited with code 3 after 0." in caplog.text
    assert re.search(r"restarted crasher \(pid \d+\), attempt 4", caplog.text)
    assert SECRET not in caplog.text
    assert not any(alive(pid) for pid, _ in started(crasher) + started(steady))


def test_a_signal_and_a_clean_exit_are_named_and_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    killed, quitter = tmp_path / "killed", tmp_path / "quitter"
    supervisor = make_supervisor(
        tmp_path, {"killed": "os.kill(os.getpid(), 9)\n", "quitter": "sys.exit(0)\n"}
    )
    with supervising(supervisor):
        wait_until(lambda: len(started(killed)) >= 2, "killed restarted")
        wait_until(lambda: len(started(quitter)) >= 2, "quitter restarted")

    killed_line = r"killed was killed by SIGKILL after [\d.]+ s; restart attempt 1 in 0.2 s"
    assert re.search(killed_line, caplog.text)
    assert "quitter exited with code 0 by itself (a server should keep running)" in caplog.text


def test_stopping_terminates_every_child_and_kills_one_that_ignores_sigterm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    steady, stubborn = tmp_path / "steady", tmp_path / "stubborn"
    # Recording its start only once SIGTERM is ignored, so stopping cannot come sooner.
    ignoring = child(stubborn, FOREVER, setup=IGNORES_SIGTERM)
    supervisor = make_supervisor(tmp_path, {"steady": FOREVER, "stubborn": ignoring})
    with supervising(supervisor):
        wait_until(lambda: started(steady) != [] and started(stubborn) != [], "both started")
        stopping_at = time.monotonic()
    took = time.monotonic() - stopping_at

    assert 0.5 <= took < 5  # the grace period, then SIGKILL
    assert not alive(started(steady)[0][0])
    assert not alive(started(stubborn)[0][0])
    assert "stubborn did not stop within 0.5 s; killing it" in caplog.text
    assert "steady did not stop" not in caplog.text
    assert supervisor.pids() == {"steady": None, "stubborn": None}


def test_sigterm_stops_python_m_bot_serve_and_its_children_with_exit_code_0(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    commands = {"first": child(first, FOREVER), "second": child(second, FOREVER)}
    serve = [
        sys.executable,
        "-c",
        "import json, os, sys\n"
        "from bot.serve import supervise\n"
        "sys.exit(supervise(json.loads(sys.argv[1]), dict(os.environ)))\n",
        json.dumps(commands),
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(serve, cwd=PROJECT_ROOT, env=env, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: started(first) != [] and started(second) != [], "both started")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=WAIT_LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
        for pid, _ in started(first) + started(second):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    assert process.returncode == 0, stderr.decode()
    assert not alive(started(first)[0][0])
    assert not alive(started(second)[0][0])


def test_the_backoff_starts_over_after_a_stable_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = tmp_path / "flaky"
    backoff = Backoff(initial=0.2, cap=0.8, stable_after=1.5, quick_exit=0.5, alarm_after=99)
    supervisor = make_supervisor(tmp_path, {"flaky": FLAKY}, backoff=backoff)
    with supervising(supervisor):
        wait_until(lambda: len(started(flaky)) >= 5, "flaky started 5 times")

    # Three quick crashes double the delay; the crash after 1.8 s up starts over.
    assert scheduled(caplog, "flaky") == [(1, 0.2), (2, 0.4), (3, 0.8), (1, 0.2)]


def test_a_child_that_keeps_failing_fast_is_logged_at_error_and_still_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doomed = tmp_path / "doomed"
    backoff = Backoff(initial=0.05, cap=0.1, stable_after=5.0, quick_exit=5.0, alarm_after=3)
    supervisor = make_supervisor(tmp_path, {"doomed": "sys.exit(1)\n"}, backoff=backoff)
    with supervising(supervisor):
        wait_until(lambda: len(started(doomed)) >= 6, "doomed started 6 times")

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith("doomed keeps failing: its last 3 runs each ended within 5 s")
    assert errors[0].endswith("still retrying, next in 0.1 s; look at its log")
    # One ERROR for every quick exit from the third on: loud, never silent.
    assert len(errors) == len(scheduled(caplog, "doomed")) - 2


def test_a_command_that_cannot_start_is_retried_and_the_others_run_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    steady = tmp_path / "steady"
    missing = [str(tmp_path / "no-such-program")]
    supervisor = make_supervisor(tmp_path, {"missing": missing, "steady": FOREVER})
    with supervising(supervisor):
        wait_until(lambda: len(scheduled(caplog, "missing")) >= 2, "missing retried")
        assert supervisor.pids()["steady"] == started(steady)[0][0]

    assert "missing could not start (No such file or directory)" in caplog.text
    assert len(started(steady)) == 1
