"""Answering a request the server will not take, and logging it without its body.

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

logger = logging.getLogger(__name__)


def refuse(request: Request, status: int, reason: str) -> HTTPResponse:
    """A JSON ``{"error", "request_id"}`` answer; ``reason`` is ours, never the body's."""
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
    return response.json({"error": reason, "request_id": request_id}, status=status)
