"""Logging in and out of the workbench."""

from __future__ import annotations

import logging

from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.workbench.web import blocking, form_text, render, set_session_cookie, wb
from crm_bridge import users

logger = logging.getLogger(__name__)


def register(app: Sanic) -> None:
    """Add the login and logout routes."""
    app.add_route(home, "/", methods=["GET"], name="home")
    app.add_route(login_form, "/login", methods=["GET"], name="login_form")
    app.add_route(log_in, "/login", methods=["POST"], name="log_in")
    app.add_route(log_out, "/logout", methods=["POST"], name="log_out")


async def home(request: Request) -> HTTPResponse:
    """The workbench opens on the inbox: what customers said that the bot missed."""
    return response.redirect("/inbox")


async def login_form(request: Request) -> HTTPResponse:
    """The login page."""
    return render(request, "login.html", next=_safe_next(request.args.get("next", "")))


async def log_in(request: Request) -> HTTPResponse:
    """Check name and password (throttled per address and per name); rotate the session."""
    workbench = wb(request)
    name = form_text(request, "name").strip().lower()[:80]
    password = form_text(request, "password")
    next_path = _safe_next(form_text(request, "next"))
    keys = [f"ip:{request.ip}", f"name:{name}"]
    wait = workbench.throttle.retry_after(keys)
    if wait:
        logger.warning("Workbench login throttled for %s", request.ip)
        page = render(
            request,
            "login.html",
            status=429,
            next=next_path,
            name=name,
            error=f"Too many failed attempts. Try again in {wait // 60 + 1} minutes.",
        )
        page.headers["Retry-After"] = str(wait)
        return page
    account = await blocking(users.authenticate, workbench.crm, name, password)
    if account is None:
        workbench.throttle.failed(keys)
        logger.info("Failed workbench login from %s", request.ip)
        return render(
            request,
            "login.html",
            status=401,
            next=next_path,
            name=name,
            error="That name and password do not match an account.",
        )
    workbench.throttle.succeeded(keys)
    logger.info("Workbench login: %s", account.name)
    answer = response.redirect(next_path or "/inbox", status=303)
    set_session_cookie(request, answer, workbench.signer.new(account.id))
    request.ctx.new_session = None
    return answer


async def log_out(request: Request) -> HTTPResponse:
    """End the session."""
    answer = response.redirect("/login", status=303)
    set_session_cookie(request, answer, None)
    request.ctx.new_session = None
    return answer


def _safe_next(path: str) -> str:
    """Only a path on this site (never ``//elsewhere`` or a full URL) after login."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path[:500]
    return ""
