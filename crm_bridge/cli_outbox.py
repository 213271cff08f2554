"""``python -m crm_bridge outbox run|status|retry|drop``: the remote CRM's outbox.

Registered by ``crm_bridge.cli.build_parser``; each handler takes the parsed arguments
and the CRM's URL, like the other commands there. ``outbox run`` is the worker that
``make run`` starts when ``CRM_BACKEND`` names a remote CRM (``make outbox-worker``
runs it alone).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
from typing import Any

from crm_bridge import settings
from crm_bridge.db import session_factory

logger = logging.getLogger(__name__)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (some containers)
        return "operator"


def cmd_run(args: argparse.Namespace, url: str) -> int:
    """Deliver due events until stopped (SIGINT/SIGTERM), or one round with ``--once``."""
    from crm_bridge.interaction_log import close_idle
    from crm_bridge.outbox import OutboxWorker
    from crm_bridge.remote.registry import remote_crm_from_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    crm = settings.load()
    adapter = remote_crm_from_settings(crm)
    if adapter is None:
        print("CRM_BACKEND is sql: there is no remote CRM to deliver to.", file=sys.stderr)
        return 0
    factory = session_factory(url)
    worker = OutboxWorker(
        factory,
        adapter,
        before_round=lambda: close_idle(factory, crm.session_timeout_minutes, adapter.name),
    )
    if args.once:
        report = worker.run_once(args.limit)
        print(f"delivered {report.delivered}, retried {report.retried}, parked {report.parked}")
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: worker.stop())
    logger.info("Outbox worker delivering to %s every %.0f s", adapter.name, args.interval)
    worker.run_forever(interval=args.interval, limit=args.limit)
    return 0


def cmd_status(args: argparse.Namespace, url: str) -> int:
    """The counts per status and each parked event with its reason."""
    from crm_bridge.outbox_admin import status

    report = status(session_factory(url), args.backend)
    print(report.line())
    for event in report.parked:
        held = f"; holds back {event.blocks} later" if event.blocks else ""
        print(
            f"#{event.id:<6} {event.kind:<20} {event.key:<18} contact {event.contact_id} "
            f"attempts {event.attempts}{held}\n        {event.last_error}"
        )
    return 0


def cmd_retry(args: argparse.Namespace, url: str) -> int:
    """Put one parked event (or all of them) back in the queue."""
    from crm_bridge.outbox_admin import retry, retry_parked

    if args.all_parked:
        print(f"{retry_parked(session_factory(url), args.backend)} parked events queued again.")
    elif args.id is None:
        print("Give an event id or --all-parked.", file=sys.stderr)
        return 2
    else:
        retry(session_factory(url), args.id)
        print(f"Outbox event #{args.id} queued again.")
    return 0


def cmd_drop(args: argparse.Namespace, url: str) -> int:
    """Take a parked event out of the queue for good (kept, marked dropped by whom)."""
    from crm_bridge.outbox_admin import drop

    drop(session_factory(url), args.id, args.actor or _operator())
    print(f"Outbox event #{args.id} dropped; the contact's later events go on.")
    return 0


def register(sub: Any) -> None:
    """Add ``outbox`` and its subcommands to the CLI's subcommands (an argparse subparsers)."""
    outbox = sub.add_parser("outbox", help="the remote CRM's outbox (CRM_BACKEND)")
    commands = outbox.add_subparsers(dest="outbox_command", required=True)
    run = commands.add_parser("run", help="deliver events to the remote CRM (the worker)")
    run.set_defaults(handler=cmd_run)
    run.add_argument("--once", action="store_true", help="one round, then exit")
    run.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    run.add_argument("--limit", type=int, default=50, help="events per round")
    status = commands.add_parser("status", help="counts, and the parked events with reasons")
    status.set_defaults(handler=cmd_status)
    retry = commands.add_parser("retry", help="queue a parked event again")
    retry.set_defaults(handler=cmd_retry)
    retry.add_argument("id", type=int, nargs="?")
    retry.add_argument("--all-parked", action="store_true", help="every parked event")
    drop = commands.add_parser("drop", help="give up on a parked event (kept as dropped)")
    drop.set_defaults(handler=cmd_drop)
    drop.add_argument("id", type=int)
    drop.add_argument("--actor", help="who dropped it (default: your user name)")
    for command in (status, retry):
        command.add_argument("--backend", help="only this backend's events (default: all)")
