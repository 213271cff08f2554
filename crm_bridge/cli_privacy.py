"""``python -m crm_bridge erase`` and ``purge``: erasure and retention from a terminal.

Registered by ``crm_bridge.cli.build_parser``; each handler takes the parsed arguments
and the CRM's URL, like the other commands there.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from crm_bridge import settings
from crm_bridge.db import session_factory


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (some containers)
        return "operator"


def _confirmed(contact: str) -> bool:
    # The contact's name is not shown: the operator already knows whom they typed.
    prompt = (
        f"Erase contact {contact} and everything that names them, in every store? "
        "It cannot be undone. [y/N] "
    )
    try:
        return input(prompt).strip().lower() in {"y", "yes"}
    except EOFError:  # not a terminal and no --yes
        return False


def cmd_erase(args: argparse.Namespace, url: str) -> int:
    """Erase one contact (id or email) from the CRM and every configured store."""
    from crm_bridge.conversation_stores import stores_from_settings
    from crm_bridge.erasure import ErasureIncomplete, erase_contact
    from crm_bridge.link_tokens import identity_secret

    crm = settings.load()
    if not args.yes and not _confirmed(args.contact):
        print("Nothing erased.", file=sys.stderr)
        return 1
    try:
        receipt = asyncio.run(
            erase_contact(
                session_factory(url),
                args.contact,
                actor=args.actor or _operator(),
                secret=identity_secret(crm),
                stores=stores_from_settings(crm),
            )
        )
    except ErasureIncomplete as error:
        for report in error.reports:
            print(f"  {report.line()}")
        print(f"Erasure stopped: {error}. The CRM is unchanged; run it again.", file=sys.stderr)
        return 2
    for line in receipt.lines():
        print(line)
    return 0


def cmd_purge(args: argparse.Namespace, url: str) -> int:
    """Purge transcripts and conversation events older than the retention period."""
    from crm_bridge.retention import purge

    crm = settings.load()
    days = crm.transcript_retention_days if args.days is None else args.days
    if days < 0:
        print("--days must be 0 or more.", file=sys.stderr)
        return 2
    report = purge(
        session_factory(url),
        days,
        tracker_url=crm.tracker_database_url,
        redis_url=crm.redis_url,
        dry_run=args.dry_run,
    )
    for line in report.lines():
        print(line)
    if report.failed:
        print(f"Not purged this time: {', '.join(report.failed)}.", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    """Add ``erase`` and ``purge`` to the CLI's subcommands (an argparse subparsers)."""
    erase = sub.add_parser("erase", help="erase a contact from every store (prints a receipt)")
    erase.set_defaults(handler=cmd_erase)
    erase.add_argument("contact", help="contact id or email")
    erase.add_argument("--actor", help="who asked for it (default: your user name)")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge = sub.add_parser("purge", help="purge transcripts past TRANSCRIPT_RETENTION_DAYS")
    purge.set_defaults(handler=cmd_purge)
    purge.add_argument(
        "--days", type=int, help="retention in days (default: TRANSCRIPT_RETENTION_DAYS)"
    )
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")
