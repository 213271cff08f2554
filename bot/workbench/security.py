"""Sessions, CSRF tokens, login throttling and the headers every workbench page carries.

A session is a signed cookie (HMAC-SHA256 over a small JSON payload: account id,
expiry, CSRF token), so the workbench keeps no session table and a restart logs nobody
out. Every form carries the session's CSRF token and every POST is checked against it;
the cookie is ``SameSite=Strict`` and ``HttpOnly`` as a second line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

COOKIE_NAME = "rapport_workbench"
CSRF_FIELD = "csrf"
# Nothing leaves the machine: scripts, styles, images and form targets are our own.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def load_secret(configured: str, var_dir: Path) -> bytes:
    """The signing key: WORKBENCH_SECRET, else a random key kept (mode 0600) in var/."""
    if configured:
        return configured.encode()
    path = var_dir / "workbench.secret"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class SessionData:
    """What the cookie holds: who (None before login), until when, and the CSRF token."""

    account_id: int | None
    expires_at: float
    csrf: str


class SessionSigner:
    """Signs and checks session cookies."""

    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds

    def new(self, account_id: int | None) -> SessionData:
        """A fresh session (a new CSRF token too: login rotates it)."""
        return SessionData(
            account_id, time.time() + self.lifetime_seconds, secrets.token_urlsafe(24)
        )

    def dump(self, data: SessionData) -> str:
        """The cookie value for a session."""
        payload = json.dumps(
            {"a": data.account_id, "e": int(data.expires_at), "c": data.csrf}, separators=(",", ":")
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def load(self, value: str | None, now: float | None = None) -> SessionData | None:
        """The session a cookie value carries, or None when unsigned, altered or expired."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            data = SessionData(payload["a"], float(payload["e"]), str(payload["c"]))
        except (ValueError, KeyError, TypeError):
            return None
        if data.expires_at < (time.time() if now is None else now):
            return None
        return data

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()


def csrf_matches(session: SessionData | None, submitted: str | None) -> bool:
    """Whether a form's CSRF field belongs to the session that sent it."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf, submitted)


class LoginThrottle:
    """At most ``limit`` failed logins per address and per user name in ``window`` seconds.

    In memory: the workbench is one process on one machine; a restart forgets the count,
    which still bounds guessing to a handful of tries per restart.
    """

    def __init__(self, limit: int = 5, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: list[str], now: float | None = None) -> int:
        """Seconds to wait before another try with any of ``keys`` (0: go ahead)."""
        now = time.time() if now is None else now
        wait = 0.0
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if len(failures) >= self.limit:
                    wait = max(wait, failures[0] + self.window - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, keys: list[str], now: float | None = None) -> None:
        """Count one failed login against each key."""
        now = time.time() if now is None else now
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, keys: list[str]) -> None:
        """A good login clears the name's count (not the address's)."""
        with self._lock:
            for key in keys:
                if key.startswith("name:"):
                    self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
