"""Answering a request the server will not take, and logging it without its body
(the status for each of Rapport's error kinds comes from ``crm_bridge.errors.http_status``).

Anyone can POST to a webhook, so a refused request's body is the sender's to choose (a
megabyte of it fills the disk) and, for a genuine but stale one, a customer's words. A
refusal is logged with method, path, size, status, reason and a request id, the same id
as in the JSON answer, so an operator can match a caller's report to the log line.
"""

from __future__ import annotations

import logging
import uuid

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from crm_bridge.errors import InvalidInput, RapportError, http_status

logger = logging.getLogger(__name__)

status_for = http_status


def refuse_error(request: Request, error: RapportError) -> HTTPResponse:
    """Answer a request that failed with one of our errors (its text is safe to show;
    an unavailable backend is not described further)."""
    status = status_for(error)
    if status >= 500:
        return refuse(request, status, "A system we depend on is unavailable.")
    if isinstance(error, InvalidInput):
        return refuse(request, status, error.message, field=error.field)
    return refuse(request, status, str(error))


def refuse(request: Request, status: int, reason: str, **extra: str) -> HTTPResponse:
    """A JSON ``{"error", "request_id"}`` answer (plus ``extra`` fields); ``reason`` is
    ours, never the body's."""
    request_id = uuid.uuid4().hex[:16]
    logger.warning(
        "Refused %s %s (%d bytes): %d %s [request %s]",
        request.method,
        request.path,
        len(request.body or b""),
        status,
        reason,
        request_id,
    )
    return response.json({"error": reason, "request_id": request_id, **extra}, status=status)
