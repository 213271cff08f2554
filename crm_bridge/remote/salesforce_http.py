"""Salesforce's HTTP details for the adapter (``crm_bridge.remote.salesforce``): timeouts
on every request, the Retry-After the client does not pass on, the daily allowance as a
limiter, and Salesforce's error codes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from crm_bridge.remote.base import RemotePermanent
from crm_bridge.remote.ratelimit import MARGIN_SECONDS, RateLimiter, Window

DAY_SECONDS = 86400.0
# The limiter waits for room in the daily window; a wait longer than this is not slept
# in a worker thread (it could not be stopped) but handed to the outbox as a retry.
MAX_LIMITER_WAIT = 30.0


class QuotaSpent(Exception):
    """The limiter would wait ``seconds`` for room (the daily share is used up)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class Refused(RemotePermanent):
    """A refusal with Salesforce's errorCode at hand (for the stale-parent case)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class TimeoutSession(requests.Session):
    """A requests session whose every request (sign-in included) has ``timeout``, and
    which remembers the last Retry-After header per thread (simple-salesforce's
    exceptions do not carry headers)."""

    def __init__(self, timeout: float | tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout
        self.last = threading.local()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        self.last.retry_after = None
        response = super().request(method, url, *args, **kwargs)
        self.last.retry_after = response.headers.get("Retry-After")
        return response


def salesforce_limiter(
    requests_per_day: int,
    time_scale: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RateLimiter:
    """Salesforce's daily allowance as a limiter (``time_scale`` < 1 shortens the day, for
    tests). A Composite request is one API call, as Salesforce counts it."""

    def bounded_sleep(seconds: float) -> None:
        if seconds > MAX_LIMITER_WAIT:
            raise QuotaSpent(seconds)
        sleep(seconds)

    window = Window(requests_per_day, DAY_SECONDS * time_scale + MARGIN_SECONDS)
    return RateLimiter(
        {"requests": window}, kinds={}, default=("requests",), clock=clock, sleep=bounded_sleep
    )


def error_code(content: Any) -> str:
    """The first errorCode of a Salesforce error body (a list of errors), checked to be a
    plain identifier; UNKNOWN otherwise."""
    first = content[0] if isinstance(content, list) and content else content
    code = first.get("errorCode") if isinstance(first, dict) else None
    return code if isinstance(code, str) and code.isidentifier() else "UNKNOWN"
