"""``python -m bot handoffs``: the agent console in a terminal.

It talks to the running server's agent API (``/agents/api``, ``AGENT_API_TOKEN``), so a
claim, reply or hand-back from the terminal does what the same click in Slack does: the
customer is told on their channel, the handoff's Slack thread shows it, the CRM records
it (``bot.handoff_service``). Without a running server or the API switched on it says so.

  python -m bot handoffs                                 # waiting and held conversations
  python -m bot handoffs claim 12 --agent U7 --name Dana
  python -m bot handoffs reply 12 --agent U7 "I'm on it."
  python -m bot handoffs hand-back 12 --agent U7 [--outcome needs_follow_up]
  python -m bot handoffs take-over 31 --agent U7 --name Dana   # an interaction's id
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import requests

from bot import settings as bot_settings

TIMEOUT_SECONDS = 15


class ConsoleError(Exception):
    """The API could not be reached or refused the request; the text says why."""


def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One agent API request against this machine's server; its JSON answer."""
    settings = bot_settings.current()
    if not settings.agent_api_token:
        raise ConsoleError("The agent API is off: set AGENT_API_TOKEN (here and for the server).")
    url = f"http://{settings.rasa_interface}:{settings.rasa_port}/agents/api{path}"
    headers = {"Authorization": f"Bearer {settings.agent_api_token}"}
    try:
        response = requests.request(
            method, url, json=body, headers=headers, timeout=TIMEOUT_SECONDS
        )
    except requests.RequestException as error:
        raise ConsoleError(f"No server answers at {url} (is `make run` running?)") from error
    try:
        data: dict[str, Any] = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        raise ConsoleError(f"{response.status_code}: {data.get('error') or response.reason}")
    return data


def line(handoff: dict[str, Any]) -> str:
    """One handoff as a table row."""
    owner = f"{handoff['agent_name']} ({handoff['agent_id']})" if handoff.get("agent_id") else "-"
    return (
        f"#{handoff['id']:<5} {handoff['state']:<7} {handoff['channel']:<9} "
        f"{str(handoff['sender_id'])[:28]:<28} {handoff['reason']:<18} "
        f"since {str(handoff['requested_at'])[:16]}  agent: {owner}"
    )


def run(args: argparse.Namespace) -> str:
    """Do what the command line asks; what to print."""
    agent = {"agent_id": args.agent, "agent_name": args.name or args.agent}
    if args.command == "claim":
        handoff = call("POST", f"/handoffs/{args.id}/claim", agent)["handoff"]
        return f"Claimed: {line(handoff)}\nThe bot is silent here until you hand it back."
    if args.command == "take-over":
        handoff = call("POST", f"/interactions/{args.id}/take", agent)["handoff"]
        return f"Taken over: {line(handoff)}"
    if args.command == "reply":
        answer = call("POST", f"/handoffs/{args.id}/reply", {**agent, "text": args.text})
        return (
            "Sent." if answer["delivered"] else "In the transcript; NOT delivered to the customer."
        )
    if args.command == "hand-back":
        body = {"agent_id": args.agent, "outcome": args.outcome}
        handoff = call("POST", f"/handoffs/{args.id}/handback", body)["handoff"]
        return f"Handed back ({handoff['outcome']}): the bot answers this conversation again."
    handoffs = call("GET", "/handoffs")["handoffs"]
    return (
        "\n".join(line(h) for h in handoffs)
        or "No conversation is waiting for or held by an agent."
    )


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="python -m bot handoffs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command")
    sub.add_parser("list", help="conversations waiting for or held by an agent")
    for name, target in (
        ("claim", "handoff"),
        ("take-over", "interaction"),
        ("reply", "handoff"),
        ("hand-back", "handoff"),
    ):
        command = sub.add_parser(name, help=f"{name} (the {target}'s id)")
        command.add_argument("id", type=int)
        command.add_argument("--agent", required=True, help="your agent id")
        command.add_argument("--name", help="your name, as the customer sees it")
    sub.choices["reply"].add_argument("text")
    sub.choices["hand-back"].add_argument(
        "--outcome", default="resolved", choices=["resolved", "needs_follow_up"]
    )
    return top


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (exit 2 with one line when the server refuses or is not there)."""
    args = parser().parse_args(argv)
    if args.command in (None, "list"):
        args.command, args.agent, args.name = "list", "", None
    try:
        print(run(args))
    except ConsoleError as error:
        print(f"handoffs: {error}", file=sys.stderr)
        return 2
    return 0
