"""The workbench's Sanic app: one module per page (``pages_*.py``, small named
handlers) on the shared plumbing of ``web.py``; ``python -m bot workbench`` serves it."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sanic import Sanic

from bot.workbench import (
    pages_auth,
    pages_golden,
    pages_inbox,
    pages_insights,
    pages_intents,
    pages_training,
    web,
)
from bot.workbench.context import Workbench
from crm_bridge.errors import RapportError

HERE = Path(__file__).resolve().parent
PAGES = (pages_auth, pages_intents, pages_inbox, pages_training, pages_golden, pages_insights)
_app_numbers = itertools.count(1)


def create_app(workbench: Workbench) -> Sanic:
    """The workbench app; the pages register their routes on it."""
    # Sanic keeps a registry of app names per process: tests build several apps.
    app = Sanic(f"rapport_workbench_{next(_app_numbers)}")
    app.config.REQUEST_MAX_SIZE = 2 * 1024 * 1024
    app.ctx.workbench = workbench
    app.ctx.templates = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app.static("/static", str(HERE / "static"), name="static")
    app.register_middleware(web.load_session, "request")
    app.register_middleware(web.finish_response, "response")
    app.error_handler.add(RapportError, web.answer_rapport_error)
    for pages in PAGES:
        pages.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bot workbench``: serve the workbench on WORKBENCH_PORT."""
    import argparse

    from bot import settings as bot_settings
    from bot.workbench.context import build_workbench

    parser = argparse.ArgumentParser(prog="python -m bot workbench", description=__doc__)
    parser.parse_args(argv)
    settings = bot_settings.current()
    settings.validate()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    app = create_app(build_workbench(settings))
    print(
        f"Workbench on http://{settings.workbench_interface}:{settings.workbench_port} "
        "(accounts: python -m crm_bridge add-user NAME --role trainer)",
        flush=True,
    )
    # One process: the login throttle and the training job handle live in it.
    app.run(
        host=settings.workbench_interface,
        port=settings.workbench_port,
        access_log=False,
        workers=1,
    )
    return 0
