"""Handoff commands of ``python -m crm_bridge``: a minimal agent console in a terminal."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta

from crm_bridge.handoff import HandbackOutcome, HandoffDesk, HandoffView


def _line(handoff: HandoffView) -> str:
    owner = f"{handoff.agent_name} ({handoff.agent_id})" if handoff.agent_id else "-"
    return (
        f"#{handoff.id:<5} {handoff.state:<7} {handoff.channel:<9} {handoff.sender_id[:28]:<28} "
        f"{handoff.reason:<18} since {handoff.requested_at:%Y-%m-%d %H:%M}  agent: {owner}"
    )


def cmd_handoffs(args: argparse.Namespace, url: str) -> int:
    handoffs = HandoffDesk(url).list()
    for handoff in handoffs:
        print(_line(handoff))
    if not handoffs:
        print("No conversation is waiting for or held by an agent.")
    return 0


def cmd_claim(args: argparse.Namespace, url: str) -> int:
    claimed = HandoffDesk(url).claim(args.id, args.agent, args.name or args.agent)
    print(
        f"Claimed: {_line(claimed)}\nThe bot is silent in this conversation until you hand it back."
    )
    return 0


def cmd_hand_back(args: argparse.Namespace, url: str) -> int:
    back = HandoffDesk(url).hand_back(args.id, args.agent, HandbackOutcome(args.outcome))
    print(f"Handed back ({back.outcome}): the bot answers this conversation again.")
    return 0


def cmd_expire(args: argparse.Namespace, url: str) -> int:
    expired = HandoffDesk(url).expire_unclaimed(timedelta(minutes=args.minutes))
    print(f"{len(expired)} unclaimed handoffs timed out.")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the handoff commands on the CLI's sub-parsers."""
    commands: dict[str, tuple[Callable[[argparse.Namespace, str], int], str]] = {
        "handoffs": (cmd_handoffs, "conversations waiting for or held by an agent"),
        "claim": (cmd_claim, "take a queued conversation (the bot goes silent)"),
        "hand-back": (cmd_hand_back, "return a conversation to the bot"),
        "expire-handoffs": (cmd_expire, "time out handoffs nobody claimed"),
    }
    for name, (handler, help_text) in commands.items():
        command = sub.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
    for name in ("claim", "hand-back"):
        sub.choices[name].add_argument("id", type=int)
        sub.choices[name].add_argument("--agent", required=True, help="the agent's id")
    sub.choices["claim"].add_argument("--name", help="the agent's display name")
    sub.choices["hand-back"].add_argument(
        "--outcome",
        default="resolved",
        choices=[o.value for o in HandbackOutcome if o.value != "timed_out"],
    )
    sub.choices["expire-handoffs"].add_argument("--minutes", type=int, default=15)
