"""``python -m crm_bridge``: migrate, seed, and read the CRM timeline from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_bridge import cli_merging, cli_outbox, cli_privacy, errors, models, settings
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, RapportError


class NotFound(Exception):
    """What the user asked to see does not exist (exit code 1, message on stderr)."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def find_contact(session: Session, ref: str) -> models.Contact:
    """A contact by id, email, or ``channel:external_id``."""
    query = select(models.Contact)
    if ref.isdigit():
        query = query.where(models.Contact.id == int(ref))
    elif "@" in ref:
        query = query.where(models.Contact.email == ref.strip().lower())
    elif ":" in ref:
        channel, _, external = ref.partition(":")
        query = query.join(models.ChannelIdentity).where(
            models.ChannelIdentity.channel == channel,
            models.ChannelIdentity.external_id == external,
        )
    else:
        raise NotFound(
            "Give a contact id, an email, or channel:external_id (e.g. rest:demo-alice)."
        )
    contact = session.execute(query).scalar_one_or_none()
    if contact is None:
        raise NotFound(f"No contact matches {ref!r}.")
    return contact


def interaction_dict(interaction: models.Interaction, with_transcript: bool) -> dict[str, Any]:
    """A JSON-ready view of an Interaction."""
    data: dict[str, Any] = {
        "id": interaction.id,
        "sender_id": interaction.sender_id,
        "channel": interaction.channel,
        "contact_id": interaction.contact_id,
        "started_at": _when(interaction.started_at),
        "ended_at": _when(interaction.ended_at),
        "closed": interaction.closed,
        "outcome": interaction.outcome,
        "intents": interaction.intents or [],
        "summary": interaction.summary,
        "message_count": len(interaction.messages),
        "tickets": [
            {
                "reference": t.reference,
                "category": t.category,
                "subject": t.subject,
                "status": t.status,
            }
            for t in interaction.tickets
        ],
        "returns": [
            {
                "reference": r.reference,
                "order": r.order.number,
                "item": r.item,
                "reason": r.reason,
                "status": r.status,
            }
            for r in interaction.returns
        ],
        "csat": interaction.csat,
        "handoffs": [
            {
                "id": h.id,
                "reason": h.reason,
                "state": h.state,
                "agent_id": h.agent_id,
                "agent_name": h.agent_name,
                "requested_at": _when(h.requested_at),
                "claimed_at": _when(h.claimed_at),
                "handed_back_at": _when(h.handed_back_at),
                "outcome": h.outcome,
                "csat": h.csat,
            }
            for h in interaction.handoffs
        ],
    }
    if with_transcript:
        data["transcript"] = [
            {
                "at": _when(m.sent_at),
                "direction": m.direction,
                "author": m.author,
                "text": m.text,
                "intent": m.intent,
                "confidence": m.confidence,
                "buttons": [b.get("title") for b in m.buttons or [] if isinstance(b, dict)],
            }
            for m in interaction.messages
        ]
    return data


def contact_dict(session: Session, contact: models.Contact) -> dict[str, Any]:
    """A JSON-ready view of a contact with identities, orders and interactions."""
    interactions = session.execute(
        select(models.Interaction)
        .where(models.Interaction.contact_id == contact.id)
        .order_by(models.Interaction.started_at.desc())
    ).scalars()
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "identities": [f"{i.channel}:{i.external_id}" for i in contact.identities],
        "orders": [
            {
                "number": o.number,
                "status": o.status,
                "placed_at": _when(o.placed_at),
                "items": [f"{i.quantity} x {i.name}" for i in o.items],
            }
            for o in contact.orders
        ],
        "interactions": [interaction_dict(i, with_transcript=False) for i in interactions],
        **cli_merging.contact_extras(session, contact),
    }


def print_contact(data: dict[str, Any]) -> None:
    print(f"Contact #{data['id']}: {data['name']}")
    print(f"  email: {data['email'] or '-'}   phone: {data['phone'] or '-'}")
    cli_merging.print_contact_extras(data)  # identities with their proof, merges
    print("Orders:")
    for order in data["orders"] or [{"number": "-", "status": "", "placed_at": "", "items": []}]:
        print(
            f"  {order['number']}  {order['status']:<10} {order['placed_at']}  "
            f"{'; '.join(order['items'])}"
        )
    print("Interactions (newest first):")
    if not data["interactions"]:
        print("  none yet")
    for i in data["interactions"]:
        print(
            f"  #{i['id']}  {i['channel'] or '-':<9} {i['started_at']} -> {i['ended_at']}  "
            f"{i['outcome']:<16} {i['summary']}"
        )


def print_interaction(data: dict[str, Any]) -> None:
    print(f"Interaction #{data['id']}  ({'closed' if data['closed'] else 'open'})")
    print(
        f"  sender:   {data['sender_id']}  channel: {data['channel'] or '-'}  "
        f"contact: {data['contact_id'] or 'not linked'}"
    )
    print(f"  started:  {data['started_at']}   ended: {data['ended_at']}")
    print(f"  outcome:  {data['outcome']}")
    print(f"  intents:  {', '.join(data['intents']) or '-'}")
    for ticket in data["tickets"]:
        print(f"  ticket:   {ticket['reference']} [{ticket['category']}] {ticket['subject']}")
    for ret in data["returns"]:
        print(
            f"  return:   {ret['reference']} order {ret['order']}: {ret['item']} ({ret['reason']})"
        )
    for h in data["handoffs"]:
        agent = f"{h['agent_name']} ({h['agent_id']})" if h["agent_id"] else "no agent"
        print(
            f"  handoff:  #{h['id']} {h['reason']}, {h['state']}, {agent}; requested "
            f"{h['requested_at']}, claimed {h['claimed_at'] or '-'}, handed back "
            f"{h['handed_back_at'] or '-'}, outcome {h['outcome'] or '-'}"
        )
    if data["csat"]:
        print(f"  csat:     {data['csat']}/5")
    print("Transcript:")
    for line in data["transcript"]:
        who = "customer" if line["direction"] == "inbound" else line["author"]
        detail = ""
        if line["intent"]:
            detail = f"   [{line['intent']} {line['confidence'] or 0:.2f}]"
        print(f"  {line['at'][11:19]} {who:>8}: {line['text']}{detail}")
        if line["buttons"]:
            print(f"  {'':>17} buttons: {' | '.join(str(b) for b in line['buttons'])}")


def cmd_migrate(args: argparse.Namespace, url: str) -> int:
    from crm_bridge.migrate import upgrade

    upgrade(url)
    print(f"CRM schema is up to date at {settings.redact_url(url)}")
    return 0


def cmd_seed(args: argparse.Namespace, url: str) -> int:
    from crm_bridge.seed import seed

    added = seed(url)
    print(f"Demo data ready ({added} new contacts).")
    return 0


def cmd_show_contact(args: argparse.Namespace, url: str) -> int:
    with unit_of_work(session_factory(url)) as session:
        data = contact_dict(session, find_contact(session, args.contact))
    print(json.dumps(data, indent=2, ensure_ascii=False)) if args.json else print_contact(data)
    return 0


def cmd_show_interaction(args: argparse.Namespace, url: str) -> int:
    with unit_of_work(session_factory(url)) as session:
        interaction = session.get(models.Interaction, args.id)
        if interaction is None:
            raise NotFound(f"No interaction #{args.id}.")
        data = interaction_dict(interaction, with_transcript=True)
    print(json.dumps(data, indent=2, ensure_ascii=False)) if args.json else print_interaction(data)
    return 0


def cmd_list_interactions(args: argparse.Namespace, url: str) -> int:
    with unit_of_work(session_factory(url)) as session:
        query = select(models.Interaction).order_by(models.Interaction.started_at.desc())
        if args.sender:
            query = query.where(models.Interaction.sender_id == args.sender)
        rows = [
            interaction_dict(i, with_transcript=False)
            for i in session.execute(query.limit(args.limit)).scalars()
        ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    for i in [] if args.json else rows:
        print(
            f"#{i['id']:<5} {i['sender_id'][:24]:<24} {i['channel'] or '-':<9} "
            f"{i['started_at']}  {i['outcome']:<16} {i['summary']}"
        )
    return 0


def cmd_close_stale(args: argparse.Namespace, url: str) -> int:
    cutoff = datetime.now(timezone.utc) - timedelta(minutes=settings.session_timeout_minutes())
    with unit_of_work(session_factory(url)) as session:
        result = session.execute(
            update(models.Interaction)
            .where(models.Interaction.closed.is_(False), models.Interaction.ended_at < cutoff)
            .values(closed=True)
        )
        closed = result.rowcount
    print(f"Closed {closed} idle interactions.")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """The new password from stdin (``--password-stdin``) or typed twice, never argv."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise InvalidInput("password", "The two passwords differ.")
    return first


def cmd_add_user(args: argparse.Namespace, url: str) -> int:
    from crm_bridge import users

    account = users.add_user(session_factory(url), args.name, args.role, _read_password(args))
    print(f"Added {account.role} {account.name}.")
    return 0


def cmd_set_password(args: argparse.Namespace, url: str) -> int:
    from crm_bridge import users

    users.set_password(session_factory(url), args.name, _read_password(args))
    print(f"Changed the password of {args.name}.")
    return 0


def cmd_disable_user(args: argparse.Namespace, url: str) -> int:
    from crm_bridge import users

    users.set_disabled(session_factory(url), args.name, not args.enable)
    print(f"{args.name} is {'enabled' if args.enable else 'disabled'}.")
    return 0


def cmd_list_users(args: argparse.Namespace, url: str) -> int:
    from crm_bridge import users

    for account, disabled in users.list_accounts(session_factory(url)):
        print(f"{account.name:<24} {account.role:<8} {'disabled' if disabled else ''}".rstrip())
    return 0


def cmd_link_token(args: argparse.Namespace, url: str) -> int:
    from urllib.parse import urlencode

    from crm_bridge.link_tokens import LinkTokens, identity_secret

    factory = session_factory(url)
    with unit_of_work(factory) as session:
        contact_id = find_contact(session, args.contact).id
    tokens = LinkTokens(factory, identity_secret(settings.load()))
    token = tokens.issue(contact_id, timedelta(hours=args.hours))
    print(token)
    if args.telegram_bot:
        print(f"https://t.me/{args.telegram_bot.lstrip('@')}?start={token}")
    if args.web_url:
        print(f"{args.web_url}{'&' if '?' in args.web_url else '?'}{urlencode({'link': token})}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crm_bridge", description=__doc__)
    parser.add_argument("--database-url", help="defaults to CRM_DATABASE_URL, else var/crm.db")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace, str], int], str]] = {
        "migrate": (cmd_migrate, "apply the database migrations"),
        "seed": (cmd_seed, "add the demo contacts and orders (idempotent)"),
        "show-contact": (cmd_show_contact, "a contact with orders and interactions"),
        "show-interaction": (cmd_show_interaction, "one interaction with its transcript"),
        "list-interactions": (cmd_list_interactions, "the latest interactions"),
        "close-stale": (cmd_close_stale, "close interactions idle past the session timeout"),
        "add-user": (cmd_add_user, "add a workbench account (trainer or admin)"),
        "set-password": (cmd_set_password, "change a workbench account's password"),
        "disable-user": (cmd_disable_user, "lock a workbench account out (--enable: let it in)"),
        "list-users": (cmd_list_users, "the workbench accounts"),
        "link-token": (cmd_link_token, "a single-use link that proves a contact in a channel"),
    }
    for name, (handler, help_text) in commands.items():
        command = sub.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        if name in {"show-contact", "show-interaction", "list-interactions"}:
            command.add_argument("--json", action="store_true", help="machine-readable output")
    sub.choices["show-contact"].add_argument("contact", help="id, email or channel:external_id")
    sub.choices["show-interaction"].add_argument("id", type=int)
    sub.choices["list-interactions"].add_argument("--sender")
    sub.choices["list-interactions"].add_argument("--limit", type=int, default=20)
    for name in ("add-user", "set-password", "disable-user"):
        sub.choices[name].add_argument("name")
    for name in ("add-user", "set-password"):
        sub.choices[name].add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
    sub.choices["add-user"].add_argument("--role", choices=("trainer", "admin"), default="trainer")
    sub.choices["disable-user"].add_argument("--enable", action="store_true")
    link = sub.choices["link-token"]
    link.add_argument("contact", help="id, email or channel:external_id")
    link.add_argument("--hours", type=float, default=24, help="how long the link works")
    link.add_argument("--telegram-bot", help="print a t.me deep link for this bot username")
    link.add_argument("--web-url", help="print a web chat link (the token as ?link=)")
    cli_privacy.register(sub)  # erase, purge
    cli_merging.register(sub)  # merge, unmerge, merges
    cli_outbox.register(sub)  # outbox run, status, retry, drop
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one CLI command; 0 on success, 1 when something is not found, 2 on CRM errors."""
    args = build_parser().parse_args(argv)
    url = args.database_url or settings.database_url()
    try:
        result: int = args.handler(args, url)
        return result
    except (NotFound, errors.NotFound) as error:
        print(error, file=sys.stderr)
        return 1
    except InvalidInput as error:
        print(error.message, file=sys.stderr)
        return 2
    except Conflict as error:
        print(error, file=sys.stderr)
        return 2
    except RapportError as error:
        print(f"CRM error: {error}", file=sys.stderr)
        return 2
