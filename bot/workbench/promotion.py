"""The model registry: which trained model the Rasa server serves, how it got there, and
the way back.

A promotion loads a candidate into the *running* Rasa server through its HTTP API
(``PUT /model``), then moves the serving pointer (``models_dir/serving.json``:
``{"current": name, "previous": name | null}``), then records a ``ModelPromotion`` row:
who, when, why, the scores and golden results that allowed it and the data's commit. A
rollback loads ``previous`` again and swaps the pointer. ``python -m bot serve`` serves
the pointer's model after a restart, and ``bot.train.prune_old_models`` never deletes
the two models it names.

When Rasa cannot be reached or refuses the model, nothing changes: no pointer move, no
row. The API token travels in the query string (the only way Rasa 3.6 takes it), so
requests go through ``http.client``, which logs nothing, and no error carries the URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import http.client
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from crm_bridge import models
from crm_bridge.db import unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, NotFound, RapportError, Unavailable

if TYPE_CHECKING:
    from bot.workbench.evaluation import PromotionDecision

logger = logging.getLogger(__name__)

POINTER_FILE = "serving.json"
LOCK_FILE = ".serving.lock"
STATUS_TIMEOUT_SECONDS = 5.0
GIT_TIMEOUT_SECONDS = 5.0
MAX_HISTORY = 500

__all__ = [
    "ModelRegistry",
    "PromotionRecord",
    "ServingPointer",
    "data_commit",
    "pinned_models",
    "read_pointer",
]


# --------------------------------------------------------------------------- the pointer


@dataclasses.dataclass(frozen=True)
class ServingPointer:
    """The model file names (in the models folder) that serve now and served before."""

    current: str
    previous: str | None = None


def _is_file_name(value: Any) -> bool:
    # The pointer names files inside models_dir, nothing else ("../x" would escape it).
    return isinstance(value, str) and bool(value) and Path(value).name == value


def read_pointer(models_dir: Path) -> ServingPointer | None:
    """The serving pointer, or None when there is none (or it is unreadable)."""
    path = models_dir / POINTER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.warning("Ignoring the unreadable serving pointer %s", path)
        return None
    if not isinstance(data, dict) or not _is_file_name(data.get("current")):
        logger.warning("Ignoring the malformed serving pointer %s", path)
        return None
    previous = data.get("previous")
    return ServingPointer(data["current"], previous if _is_file_name(previous) else None)


def write_pointer(models_dir: Path, pointer: ServingPointer | None) -> None:
    """Replace the pointer atomically (None removes it): a reader sees the old or the new."""
    path = models_dir / POINTER_FILE
    if pointer is None:
        path.unlink(missing_ok=True)
        return
    handle, temporary = tempfile.mkstemp(prefix=".serving.", suffix=".tmp", dir=models_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"current": pointer.current, "previous": pointer.previous}, file)
            file.write("\n")
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def pinned_models(models_dir: Path) -> set[str]:
    """The model file names the pointer names (current and previous): never prune them."""
    pointer = read_pointer(models_dir)
    if pointer is None:
        return set()
    return {name for name in (pointer.current, pointer.previous) if name}


# --------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class PromotionRecord:
    """One change of the serving model, as the history shows it."""

    id: int
    model: str
    previous_model: str | None
    action: str  # promote | override | rollback
    actor: str
    reason: str
    scores: dict[str, Any] | None
    golden: dict[str, Any] | None
    data_commit: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: models.ModelPromotion) -> PromotionRecord:
        """The record of one ``model_promotions`` row."""
        return cls(**{field.name: getattr(row, field.name) for field in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``created_at`` in ISO 8601)."""
        data = dataclasses.asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def data_commit(root: Path) -> str | None:
    """The project's ``git rev-parse HEAD``, with "+dirty" when data/ or domain.yml have
    changes not committed; None outside git (or when git does not answer quickly)."""
    git = shutil.which("git")
    if git is None:
        return None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [git, *args], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS
        )

    try:
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = run("status", "--porcelain", "--", "data", "domain.yml")
    except (OSError, subprocess.TimeoutExpired):
        return None
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------- the registry


class ModelRegistry:
    """Promotes, rolls back and remembers the model of one running Rasa server."""

    data_commit = staticmethod(data_commit)

    def __init__(
        self,
        models_dir: Path,
        crm_session_factory: sessionmaker,
        rasa_url: str,
        rasa_token: str,
        timeout: float = 120,
    ) -> None:
        """``timeout``: how long Rasa may take to load a model (seconds)."""
        self.models_dir = Path(models_dir)
        self._crm = crm_session_factory
        self._rasa_url = rasa_url.rstrip("/")
        self._token = rasa_token
        self._timeout = timeout

    def __repr__(self) -> str:
        # Never the token.
        return f"ModelRegistry({str(self.models_dir)!r}, rasa_url={self._rasa_url!r})"

    def serving(self) -> str | None:
        """The serving model's file name: the pointer's, else what Rasa reports, else None."""
        pointer = read_pointer(self.models_dir)
        if pointer is not None:
            return pointer.current
        try:
            return self._rasa_model()
        except Unavailable:
            return None

    def promote(
        self,
        candidate: Path,
        actor: str,
        decision: PromotionDecision,
        scores: dict[str, Any],
        golden: dict[str, Any],
        data_commit: str | None,
        override_reason: str = "",
    ) -> PromotionRecord:
        """Serve ``candidate`` (a model file in the models folder).

        Conflict (with the decision's reasons) when the decision refuses it and no
        ``override_reason`` is given; with an override the reason must say something
        (InvalidInput) and the record's action is "override". Unavailable, and nothing
        changed, when Rasa cannot load it.
        """
        actor = _checked_actor(actor)
        if decision.allowed:
            action, reason = "promote", override_reason.strip()
        elif not override_reason:
            because = " ".join(decision.reasons) or "The promotion rule refuses it."
            raise Conflict(f"This candidate may not serve: {because}")
        elif not override_reason.strip():
            raise InvalidInput("override_reason", "Say why you override the promotion rule.")
        else:
            action, reason = "override", override_reason.strip()
        name = self._model_file(candidate).name
        with self._exclusive():
            pointer = read_pointer(self.models_dir)
            current = pointer.current if pointer is not None else self._rasa_model()
            if current == name:
                raise Conflict(f"{name} is already serving.")
            self._load(name)
            return self._switched(
                ServingPointer(name, current),
                pointer,
                action=action,
                actor=actor,
                reason=reason,
                scores={
                    **scores,
                    "decision": {"allowed": decision.allowed, "reasons": list(decision.reasons)},
                },
                golden=golden,
                data_commit=data_commit,
            )

    def rollback(self, actor: str, reason: str = "") -> PromotionRecord:
        """Serve the previous model again and swap the pointer (so a second rollback
        undoes the first). InvalidInput when there is nothing to roll back to."""
        actor = _checked_actor(actor)
        with self._exclusive():
            pointer = read_pointer(self.models_dir)
            if pointer is None or pointer.previous is None:
                raise InvalidInput("model", "There is nothing to roll back to.")
            previous = self._model_file(self.models_dir / pointer.previous).name
            self._load(previous)
            return self._switched(
                ServingPointer(previous, pointer.current),
                pointer,
                action="rollback",
                actor=actor,
                reason=reason.strip(),
                scores=None,
                golden=None,
                data_commit=None,
            )

    def history(self, limit: int = 20) -> list[PromotionRecord]:
        """The latest promotions, overrides and rollbacks, newest first."""
        limit = max(1, min(int(limit), MAX_HISTORY))
        with unit_of_work(self._crm) as session:
            rows = session.execute(
                select(models.ModelPromotion)
                .order_by(models.ModelPromotion.created_at.desc(), models.ModelPromotion.id.desc())
                .limit(limit)
            ).scalars()
            return [PromotionRecord.from_row(row) for row in rows]

    # ----------------------------------------------------------------------- internals

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        # One change at a time, across threads and processes: two trainers promoting at
        # once would otherwise both read the same "previous".
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with open(self.models_dir / LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _model_file(self, path: Path) -> Path:
        path = Path(path)
        if not path.name.endswith(".tar.gz") or path.resolve().parent != self.models_dir.resolve():
            raise InvalidInput("model", f"Only models in {self.models_dir} can serve.")
        if not path.is_file():
            raise NotFound(f"The model {path.name} is not in {self.models_dir} any more.")
        return path

    def _switched(
        self,
        new: ServingPointer,
        old: ServingPointer | None,
        **record: Any,
    ) -> PromotionRecord:
        """Move the pointer and record the change; if recording fails, put Rasa and the
        pointer back so that no unrecorded change stays in place."""
        write_pointer(self.models_dir, new)
        try:
            with unit_of_work(self._crm) as session:
                row = models.ModelPromotion(
                    model=new.current, previous_model=new.previous, **record
                )
                session.add(row)
                session.flush()
                result = PromotionRecord.from_row(row)
        except RapportError:
            logger.error("Recording the switch to %s failed; switching back", new.current)
            with contextlib.suppress(Unavailable):
                if new.previous:
                    self._load(new.previous)
            write_pointer(self.models_dir, old)
            raise
        logger.info(
            "%s: %s now serves (was %s), by %s",
            record["action"],
            new.current,
            new.previous,
            record["actor"],
        )
        return result

    def _load(self, name: str) -> None:
        """Make the running Rasa server serve ``models_dir/name`` (PUT /model)."""
        model_file = str((self.models_dir / name).resolve())
        try:
            status, _ = self._request("PUT", "/model", {"model_file": model_file}, self._timeout)
        except _NoAnswer:
            raise Unavailable(
                f"Rasa did not finish loading {name} within {self._timeout:.0f} s. The serving "
                "pointer is unchanged, but Rasa may still switch to it: check its /status."
            ) from None
        if status not in (200, 204):
            _refused(
                status,
                f"Rasa could not load {name} (HTTP {status}); it still serves the old model.",
            )

    def _rasa_model(self) -> str | None:
        """The model file Rasa reports serving (``GET /status``)."""
        status, body = self._request("GET", "/status", None, STATUS_TIMEOUT_SECONDS)
        if status == 409:  # Rasa runs without a model
            return None
        if status != 200:
            _refused(status, f"Rasa did not tell which model it serves (HTTP {status}).")
        try:
            model_file = json.loads(body).get("model_file")
        except (ValueError, AttributeError):
            return None
        return Path(model_file).name if isinstance(model_file, str) and model_file else None

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> tuple[int, bytes]:
        parts = urlsplit(self._rasa_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise Unavailable("The Rasa server's URL is not an http(s) URL.")
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.hostname, parts.port, timeout=timeout)
        target = parts.path + path
        if self._token:
            target += "?" + urlencode({"token": self._token})
        try:
            connection.request(
                method,
                target,
                body=json.dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            return response.status, response.read()
        except TimeoutError:
            raise _NoAnswer(f"Rasa did not answer within {timeout:.0f} s.") from None
        except (OSError, http.client.HTTPException) as error:
            # Not the error's text: it may hold the URL, and with it the token.
            where = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
            raise Unavailable(
                f"Rasa is unreachable at {where} ({type(error).__name__}); nothing was changed."
            ) from None
        finally:
            connection.close()


def _refused(status: int, otherwise: str) -> NoReturn:
    """Raise the Unavailable that explains Rasa's HTTP ``status`` to a trainer."""
    if status in (401, 403):
        raise Unavailable("Rasa refused the workbench's API token (RASA_API_TOKEN).")
    if status in (404, 405):
        raise Unavailable(
            "Rasa's HTTP API is off: start Rasa with RASA_ENABLE_API=true and RASA_API_TOKEN."
        )
    raise Unavailable(otherwise)


class _NoAnswer(Unavailable):
    """Rasa took the request but did not answer in time."""


def _checked_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise InvalidInput("actor", "Who does this? The actor's name is missing.")
    return actor[:80]
