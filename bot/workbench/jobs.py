"""The web process's handle on the background training run (``bot.workbench.pipeline``).

One run at a time, across every web worker: :meth:`TrainingJobs.start` takes an
exclusive ``flock`` on ``<work_dir>/training.lock`` and hands the locked file to the
pipeline process it spawns, which holds it until it exits (the kernel drops the lock
when the process ends, however it ends). So "is a run in progress?" is "is that lock
held?", with no stale pid file to trust. The pipeline writes its progress to
``<work_dir>/training-status.json`` (atomically); :meth:`TrainingJobs.status` reads it
and reports a run whose process died without finishing as failed. Its output (Rasa's,
which holds no customer text) goes to ``<work_dir>/training.log``.

Nothing here waits for the run: every method returns in milliseconds (a fork/exec, a
small file read), so the web app may call them from its handlers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.settings import PROJECT_ROOT
from bot.workbench.evaluation import EvaluationReport, evaluation_path_for
from crm_bridge.errors import Conflict
from crm_bridge.settings import process_environment

__all__ = ["JobStatus", "TrainingJobs", "read_status", "write_status"]

STATUS_FILE = "training-status.json"
LOCK_FILE = "training.lock"
PID_FILE = "training.pid"
LOG_FILE = "training.log"
PIPELINE_MODULE = "bot.workbench.pipeline"

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def steps_for(folds: int | None) -> list[str]:
    """The steps of a run (the pipeline's progress is counted in them)."""
    steps = ["validate", "split", "train-evaluation-model", "evaluate"]
    if folds:
        steps.append("cross-validate")
    return [*steps, "train-candidate", "golden"]


def now() -> str:
    """The current time as an ISO 8601 UTC timestamp."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """The training run's progress, as the status file holds it.

    ``state`` is running, succeeded or failed; ``step`` the step running (or the last
    one); ``log_tail`` the last lines of Rasa's output. ``candidate_model`` and
    ``evaluation_report`` are paths, set once those exist. ``golden_failures`` lists the
    golden conversations that failed; ``golden_checked`` says whether they ran at all.
    """

    state: str
    step: str
    steps_done: int
    steps_total: int
    started_at: str
    finished_at: str | None = None
    message: str = ""
    log_tail: tuple[str, ...] = ()
    candidate_model: str | None = None
    evaluation_report: str | None = None
    golden_checked: bool = False
    golden_failures: tuple[str, ...] = ()
    folds: int | None = None
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobStatus:
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("log_tail", "golden_failures"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


def write_status(path: Path, status: JobStatus) -> None:
    """Replace the status file atomically (a reader sees the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(status.to_json(), encoding="utf-8")
    os.replace(temporary, path)


def read_status(path: Path) -> JobStatus | None:
    """The status file's content, or None when there has been no run."""
    try:
        return JobStatus.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


class TrainingJobs:
    """Start, watch and cancel the one background training run.

    ``root`` is the project whose data is trained, ``models_dir`` where the candidate
    model and its ``<stem>.evaluation.json`` go, ``work_dir`` holds the status, lock, pid
    and log files. ``golden_dir`` (optional) is passed to the pipeline's golden step.
    """

    def __init__(
        self,
        root: Path,
        models_dir: Path,
        work_dir: Path,
        golden_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.root = Path(root)
        self.models_dir = Path(models_dir)
        self.work_dir = Path(work_dir)
        self.golden_dir = golden_dir
        self.python = python
        self.status_path = self.work_dir / STATUS_FILE
        self.lock_path = self.work_dir / LOCK_FILE
        self.pid_path = self.work_dir / PID_FILE
        self.log_path = self.work_dir / LOG_FILE
        self._process: subprocess.Popen[bytes] | None = None

    def command(self, folds: int | None = None) -> list[str]:
        """The pipeline's command line."""
        command = [
            self.python,
            "-m",
            PIPELINE_MODULE,
            "--root",
            str(self.root),
            "--models-dir",
            str(self.models_dir),
            "--status",
            str(self.status_path),
        ]
        if folds:
            command += ["--folds", str(folds)]
        if self.golden_dir is not None:
            command += ["--golden-dir", str(self.golden_dir)]
        return command

    def start(self, folds: int | None = None) -> JobStatus:
        """Start a run in the background; Conflict if one is already in progress."""
        if folds is not None and folds < 2:
            raise ValueError("cross-validation needs at least 2 folds")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict("A training run is already in progress") from None
            status = JobStatus(
                state=RUNNING,
                step="starting",
                steps_done=0,
                steps_total=len(steps_for(folds)),
                started_at=now(),
                message="Starting the training run",
                folds=folds,
            )
            write_status(self.status_path, status)
            env = process_environment()
            env["RASA_TELEMETRY_ENABLED"] = "false"
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
            )
            try:
                with open(self.log_path, "wb") as log:
                    # Its own session: cancel() signals the whole group (Rasa's children
                    # too), and a web worker's exit does not take the run with it.
                    self._process = subprocess.Popen(  # noqa: S603
                        self.command(folds),
                        cwd=self.root,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        pass_fds=(lock,),
                        start_new_session=True,
                    )
            except OSError as error:
                status = dataclasses.replace(
                    status,
                    state=FAILED,
                    finished_at=now(),
                    message=f"The training run could not start: {error.strerror or error}",
                )
                write_status(self.status_path, status)
                raise
            self.pid_path.write_text(str(self._process.pid))
            return dataclasses.replace(status, pid=self._process.pid)
        finally:
            # The pipeline holds the lock from here (its inherited copy of this file).
            os.close(lock)

    def status(self) -> JobStatus | None:
        """The last run's status (None if there was none); a dead run shows as failed."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # reaped: no zombie left behind
        status = read_status(self.status_path)
        if status is None or not status.running:
            return status
        with self._lock_if_free() as free:
            if not free:
                return status
            # No pipeline holds the lock: re-read (it may have just finished), and if it
            # still says running, the process died without saying so.
            status = read_status(self.status_path)
            if status is not None and status.running:
                status = dataclasses.replace(
                    status,
                    state=FAILED,
                    finished_at=now(),
                    message=(
                        f"The training process stopped unexpectedly during '{status.step}' "
                        f"(see {self.log_path.name})"
                    ),
                )
                write_status(self.status_path, status)
            return status

    def cancel(self) -> JobStatus | None:
        """Stop the running run (its whole process group); returns the status."""
        with self._lock_if_free() as free:
            if free:
                return self.status()
        # The process this handle started is known for sure (its /proc cmdline may not
        # name the pipeline yet, just after the fork); another worker's, by its pid file.
        started = self._process
        pid = started.pid if started is not None and started.poll() is None else None
        pid = pid or self._pipeline_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        return self.status()

    def latest_evaluation(self, model_name: str | None = None) -> EvaluationReport | None:
        """The evaluation stored beside ``model_name`` (a file name in ``models_dir``),
        or without a name the newest one; None when there is none."""
        if model_name is None:
            reports = sorted(
                self.models_dir.glob("*.evaluation.json"), key=lambda p: p.stat().st_mtime
            )
            path = reports[-1] if reports else None
        else:
            if not model_name or Path(model_name).name != model_name or model_name in {".", ".."}:
                return None
            if not model_name.endswith((".tar.gz", ".tgz")):
                model_name += ".tar.gz"
            path = evaluation_path_for(self.models_dir / model_name)
        if path is None or not path.is_file():
            return None
        return EvaluationReport.load(path)

    @contextlib.contextmanager
    def _lock_if_free(self) -> Iterator[bool]:
        """Hold the run lock for a moment if no run holds it (yields whether it was free)."""
        if not self.lock_path.exists():
            yield True
            return
        lock = os.open(self.lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(lock)

    def _pipeline_pid(self) -> int | None:
        """The running pipeline's pid, if the pid file names a live pipeline process."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.parent.parent.exists() and (
            not cmdline.exists() or PIPELINE_MODULE.encode() not in cmdline.read_bytes()
        ):
            return None
        return pid
