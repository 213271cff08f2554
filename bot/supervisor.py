"""Keep a set of long-running child processes up: restart one that stops, with back-off.

A crashed child is started again after 1 s, 2 s, 4 s … up to 30 s, while the others keep
running, so one failing part (say the action server) does not take every channel down.
The back-off starts over once a child has stayed up for a minute. A child that never
stays up is retried at the cap for ever, with an ERROR line at each failure once it has
failed quickly many times in a row: giving up would leave the bot half-running with
nobody watching, and the loud log is what an operator's alerting can catch.

The loop never sleeps a back-off delay: it notes when a child is due and keeps polling
the others. Stopping (Ctrl-C, SIGTERM) terminates every child, waits a grace period and
kills what is left. Log lines name the child, its exit code or signal, the attempt and
the delay; never its command line or environment, which may carry secrets.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a child, and when to stop being patient."""

    initial: float = 1.0  # the first restart's delay; each further one doubles it
    cap: float = 30.0  # the longest delay
    stable_after: float = 60.0  # up this long, a child's next exit starts over at initial
    quick_exit: float = 10.0  # an exit sooner than this after the start is a quick one
    alarm_after: int = 10  # this many quick exits in a row are logged at ERROR

    def delay(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (1, 2, …) since the last stable run."""
        return float(min(self.cap, self.initial * 2 ** max(0, attempt - 1)))


@dataclasses.dataclass
class Child:
    """One supervised command and what we know of its current run."""

    name: str
    command: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # when a stopped child is due to start again
    attempt: int = 0  # restarts since it last stayed up Backoff.stable_after
    quick_exits: int = 0  # exits in a row within Backoff.quick_exit of the start
    starts: int = 0

    def live_process(self) -> subprocess.Popen[bytes] | None:
        """The child's process if it is still running (this also reaps one that ended)."""
        if self.process is not None and self.process.poll() is None:
            return self.process
        return None


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` (Popen reports a signal as -N)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


class Supervisor:
    """Start the commands and keep them running until :meth:`request_stop`."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        env: Mapping[str, str],
        cwd: Path,
        *,
        backoff: Backoff | None = None,
        poll_seconds: float = 0.5,
        stop_grace_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.children = {name: Child(name, list(command)) for name, command in commands.items()}
        self.env = dict(env)
        self.cwd = cwd
        self.backoff = backoff or Backoff()
        self.poll_seconds = poll_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.clock = clock
        self.sleep = sleep
        self.stopping = False

    def run(self) -> int:
        """Start every child, restart those that stop, and stop them all when asked; 0."""
        try:
            for child in self.children.values():
                self.start(child)
            while not self.stopping:
                self.check()
                self.sleep(self.poll_seconds)
        finally:
            self.stop_all()
        return 0

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop every child and return (safe from a signal handler)."""
        self.stopping = True

    def handle_stop_signals(self) -> None:
        """Make SIGINT (Ctrl-C) and SIGTERM stop the children; call from the main thread."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def pids(self) -> dict[str, int | None]:
        """Each child's current process id, ``None`` while it waits to be restarted."""
        pids: dict[str, int | None] = {}
        for name, child in self.children.items():
            process = child.live_process()
            pids[name] = process.pid if process is not None else None
        return pids

    def check(self) -> None:
        """One pass over the children: note those that stopped, start those that are due."""
        for child in self.children.values():
            if self.stopping:
                return  # a child that exits now was most likely told to by the same Ctrl-C
            now = self.clock()
            if child.process is not None:
                code = child.process.poll()
                if code is not None:
                    child.process = None
                    self.schedule_restart(child, describe_exit(code), code == 0, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self.start(child)

    def start(self, child: Child) -> None:
        """Start ``child``'s command; a failure to start counts as a crash."""
        child.restart_at = None
        child.starts += 1
        child.started_at = self.clock()
        try:
            child.process = subprocess.Popen(  # noqa: S603 (our own commands, no shell)
                child.command, cwd=self.cwd, env=self.env
            )
        except OSError as error:
            # e.g. a missing interpreter: as fatal as a crash, and as worth retrying.
            self.schedule_restart(child, f"could not start ({error.strerror})", False, self.clock())
            return
        if child.starts == 1:
            logger.info("started %s (pid %d)", child.name, child.process.pid)
        else:
            logger.info(
                "restarted %s (pid %d), attempt %d", child.name, child.process.pid, child.attempt
            )

    def schedule_restart(self, child: Child, what: str, by_itself: bool, now: float) -> None:
        """Note that ``child`` stopped and when to start it again; log both."""
        uptime = now - child.started_at
        if uptime >= self.backoff.stable_after:
            child.attempt = 0  # it ran well for a while: this is a new failure, not a streak
        child.attempt += 1
        child.quick_exits = child.quick_exits + 1 if uptime < self.backoff.quick_exit else 0
        delay = self.backoff.delay(child.attempt)
        child.restart_at = now + delay
        # A server should never finish on its own, so a clean exit is restarted too.
        why = " by itself (a server should keep running)" if by_itself else ""
        logger.warning(
            "%s %s%s after %.1f s; restart attempt %d in %.1f s",
            child.name,
            what,
            why,
            uptime,
            child.attempt,
            delay,
        )
        if child.quick_exits >= self.backoff.alarm_after:
            logger.error(
                "%s keeps failing: its last %d runs each ended within %g s of starting; "
                "still retrying, next in %g s; look at its log",
                child.name,
                child.quick_exits,
                self.backoff.quick_exit,
                delay,
            )

    def stop_all(self) -> None:
        """Terminate every running child, wait the grace period, kill what is left."""
        self.stopping = True
        running = {
            child.name: process
            for child in self.children.values()
            if (process := child.live_process()) is not None
        }
        if running:
            logger.info("stopping %s", ", ".join(running))
        for process in running.values():
            process.terminate()
        deadline = self.clock() + self.stop_grace_seconds
        for name, process in running.items():
            try:
                process.wait(max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s did not stop within %.1f s; killing it", name, self.stop_grace_seconds
                )
                process.kill()
                process.wait()  # SIGKILL cannot be ignored; reap it so no zombie is left
        for child in self.children.values():
            child.process = None
