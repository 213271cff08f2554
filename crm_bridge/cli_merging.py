"""``python -m crm_bridge merge``, ``unmerge`` and ``merges``: contact merges from a
terminal, and the identities and merge history that ``show-contact`` prints.

Registered by ``crm_bridge.cli.build_parser``; each handler takes the parsed arguments
and the CRM's URL, like the other commands there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.cli_privacy import _operator
from crm_bridge.db import session_factory
from crm_bridge.identity_links import is_proven
from crm_bridge.merging import MergeView, list_merges, merge_contacts, merges_of, unmerge


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _confirmed(source: str, target: str) -> bool:
    prompt = (
        f"Merge contact {source} into contact {target}? Its channels, conversations, "
        "orders, tickets, returns, consents and notifications move to the target "
        "(undo with `unmerge`). [y/N] "
    )
    try:
        return input(prompt).strip().lower() in {"y", "yes"}
    except EOFError:  # not a terminal and no --yes
        return False


def _counts(ids_by_table: Mapping[str, tuple[int, ...]]) -> list[str]:
    return [f"  {table}: {len(ids)}" for table, ids in ids_by_table.items()]


def merge_dict(view: MergeView) -> dict[str, Any]:
    """A JSON-ready view of one merge (counts per table, not the row ids)."""
    return {
        "id": view.id,
        "source_contact_id": view.source_contact_id,
        "target_contact_id": view.target_contact_id,
        "actor": view.actor,
        "reason": view.reason,
        "merged_at": _when(view.merged_at),
        "moved": view.counts(),
        "undone_at": _when(view.undone_at) if view.undone_at else None,
        "undone_by": view.undone_by,
        "undo_reason": view.undo_reason,
    }


def merge_line(data: dict[str, Any]) -> str:
    """One merge (a :func:`merge_dict`) as a line: who into whom, when, by whom, why."""
    line = (
        f"#{data['id']}  contact #{data['source_contact_id']} -> "
        f"#{data['target_contact_id']}  {data['merged_at']} by {data['actor']}: {data['reason']}"
    )
    if data["undone_at"]:
        line += f"  [undone {data['undone_at']} by {data['undone_by']}: {data['undo_reason']}]"
    return line


def cmd_merge(args: argparse.Namespace, url: str) -> int:
    """Merge SOURCE into TARGET (ids or emails); print the merge id and what moved."""
    if not args.yes and not _confirmed(args.source, args.target):
        print("Nothing merged.", file=sys.stderr)
        return 1
    view = merge_contacts(
        session_factory(url), args.source, args.target, args.actor or _operator(), args.reason
    )
    print(
        f"Merge #{view.id}: contact #{view.source_contact_id} merged into contact "
        f"#{view.target_contact_id}. Moved:"
    )
    for line in _counts(view.moved):
        print(line)
    print(f"Undo with: python -m crm_bridge unmerge {view.id} --reason TEXT")
    return 0


def cmd_unmerge(args: argparse.Namespace, url: str) -> int:
    """Undo one merge; print what went back, and what had left the target since."""
    view = unmerge(session_factory(url), args.merge_id, args.actor or _operator(), args.reason)
    print(
        f"Merge #{view.id} undone: contact #{view.source_contact_id} is separate from "
        f"contact #{view.target_contact_id} again. Moved back:"
    )
    for line in _counts(view.moved_back):
        print(line)
    left = {
        table: len(ids) - len(view.moved_back.get(table, ()))
        for table, ids in view.moved.items()
        if len(ids) > len(view.moved_back.get(table, ()))
    }
    if left:
        gone = ", ".join(f"{table}: {count}" for table, count in left.items())
        print(f"No longer on the target, so not moved: {gone}.")
    return 0


def cmd_merges(args: argparse.Namespace, url: str) -> int:
    """The merges, newest first (of one contact when one is given)."""
    views = list_merges(session_factory(url), args.contact)
    if not views:
        print("No merges.")
    for view in views:
        print(merge_line(merge_dict(view)))
    return 0


def contact_extras(session: Session, contact: models.Contact) -> dict[str, Any]:
    """What ``show-contact`` adds about identities and merges (JSON-ready)."""
    return {
        "channel_identities": [
            {
                "channel": i.channel,
                "external_id": i.external_id,
                "proof": i.proof,
                "proven": is_proven(i.proof),
                "verified_at": _when(i.verified_at),
            }
            for i in contact.identities
        ],
        "merged_into": contact.merged_into_id,
        "merges": [merge_dict(view) for view in merges_of(session, contact.id)],
    }


def print_contact_extras(data: dict[str, Any]) -> None:
    """Print the identities with their proof level, and the merge history."""
    if data["merged_into"]:
        print(f"  merged into contact #{data['merged_into']}")
    print("Channel identities:")
    if not data["channel_identities"]:
        print("  none")
    for i in data["channel_identities"]:
        level = "proven" if i["proven"] else "order and email only"
        print(f"  {i['channel']}:{i['external_id']}  {i['proof']} ({level}), {i['verified_at']}")
    print("Merges (newest first):")
    for line in [merge_line(m) for m in data["merges"]] or ["none"]:
        print(f"  {line}")


def register(sub: Any) -> None:
    """Add ``merge``, ``unmerge`` and ``merges`` to the CLI's subcommands."""
    merge = sub.add_parser("merge", help="merge a contact into another (recorded, reversible)")
    merge.set_defaults(handler=cmd_merge)
    merge.add_argument("source", help="the contact that is merged: id or email")
    merge.add_argument("target", help="the contact that keeps everything: id or email")
    merge.add_argument("--reason", required=True, help="why: kept with the merge")
    merge.add_argument("--actor", help="who merges (default: your user name)")
    merge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    undo = sub.add_parser("unmerge", help="undo a merge (moves back exactly what moved)")
    undo.set_defaults(handler=cmd_unmerge)
    undo.add_argument("merge_id", type=int, help="the merge's id (see `merges`)")
    undo.add_argument("--reason", required=True, help="why: kept with the merge")
    undo.add_argument("--actor", help="who undoes it (default: your user name)")
    listing = sub.add_parser("merges", help="the merges, newest first")
    listing.set_defaults(handler=cmd_merges)
    listing.add_argument("contact", nargs="?", help="only this contact's: id or email")
