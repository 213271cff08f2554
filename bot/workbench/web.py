"""What every workbench page shares: the session and CSRF check, security headers,
rendering, post/redirect/get, error answers, and running blocking work in a thread
(SQL, YAML files, the sentence encoder never run on the event loop)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from sanic import response
from sanic.request import Request
from sanic.response import BaseHTTPResponse, HTTPResponse

from bot.workbench import security
from bot.workbench.context import Workbench
from crm_bridge.errors import InvalidInput, RapportError, http_status

logger = logging.getLogger(__name__)

T = TypeVar("T")


def wb(request: Request) -> Workbench:
    """The workbench's collaborators, from the app serving ``request``."""
    workbench: Workbench = request.app.ctx.workbench
    return workbench


async def blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call (SQL, files, inference) in a thread."""
    return await asyncio.to_thread(functools.partial(function, *args, **kwargs))


async def load_session(request: Request) -> HTTPResponse | None:
    """Attach the session and account; send strangers to the login page; check CSRF."""
    workbench = wb(request)
    session = workbench.signer.load(request.cookies.get(security.COOKIE_NAME))
    request.ctx.session = session
    request.ctx.new_session = None
    request.ctx.account = None
    if session is not None and session.account_id is not None:
        request.ctx.account = await blocking(workbench.find_account, session.account_id)
    public = request.path == "/login" or request.path.startswith("/static/")
    if request.ctx.account is None and not public:
        if request.method == "GET":
            return response.redirect(f"/login?next={quote(request.path, safe='/')}")
        return response.text("Log in first.", status=401)
    if request.method == "POST" and not security.csrf_matches(
        session, request.form.get(security.CSRF_FIELD) if request.form else None
    ):
        logger.warning("Refused a workbench POST to %s without a valid CSRF token", request.path)
        return response.text(
            "This form has expired (or did not come from the workbench). Go back, reload "
            "the page and send it again.",
            status=403,
        )
    if session is None:
        # A visitor gets an anonymous session, so the login form has a CSRF token too.
        request.ctx.session = request.ctx.new_session = workbench.signer.new(None)
    return None


async def finish_response(request: Request, answer: BaseHTTPResponse) -> None:
    """Security headers on everything; the session cookie when it changed."""
    for name, value in security.SECURITY_HEADERS.items():
        answer.headers.setdefault(name, value)
    new = getattr(request.ctx, "new_session", None)
    if new is not None:
        set_session_cookie(request, answer, new)


def set_session_cookie(request: Request, answer: BaseHTTPResponse, session: Any) -> None:
    """Write ``session`` (a SessionData, or None to log out) into the response's cookie."""
    workbench = wb(request)
    if session is None:
        answer.cookies[security.COOKIE_NAME] = ""
        answer.cookies[security.COOKIE_NAME]["max-age"] = 0
    else:
        answer.cookies[security.COOKIE_NAME] = workbench.signer.dump(session)
        answer.cookies[security.COOKIE_NAME]["max-age"] = int(workbench.signer.lifetime_seconds)
    cookie = answer.cookies[security.COOKIE_NAME]
    cookie["httponly"] = True
    cookie["samesite"] = "Strict"
    cookie["path"] = "/"
    if workbench.settings.workbench_secure_cookies:
        cookie["secure"] = True


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTTPResponse:
    """A page from ``templates/``, with the account, the CSRF token and notices."""
    session = request.ctx.session
    page = request.app.ctx.templates.get_template(template).render(
        account=request.ctx.account,
        csrf=session.csrf if session else "",
        csrf_field=security.CSRF_FIELD,
        notice=request.args.get("notice", "")[:300],
        path=request.path,
        **context,
    )
    return response.html(page, status=status)


def back_to(path: str, notice: str = "") -> HTTPResponse:
    """Post/redirect/get: after a successful change, go back to a page with a notice."""
    if notice:
        separator = "&" if "?" in path else "?"
        path = f"{path}{separator}notice={quote(notice)}"
    return response.redirect(path, status=303)


async def answer_rapport_error(request: Request, error: Exception) -> HTTPResponse:
    """One of our errors that no page handled itself: its status and its safe text."""
    assert isinstance(error, RapportError)
    status = http_status(error)
    message = "A system the workbench depends on is unavailable." if status >= 500 else str(error)
    if getattr(request.ctx, "account", None) is None:
        return response.text(message, status=status)
    return render(request, "error.html", status=status, message=message)


def error_text(error: RapportError) -> str:
    """What a trainer reads about a refused change (our errors' texts are safe to show)."""
    return error.message if isinstance(error, InvalidInput) else str(error)


def form_text(request: Request, name: str, default: str = "") -> str:
    """A form field as text ('' when absent)."""
    value = request.form.get(name) if request.form else None
    return value if isinstance(value, str) else default
