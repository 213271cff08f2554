"""A terminal chat with the running assistant over its REST channel (``make shell``).

Unlike ``rasa shell`` it does not start a second server: it talks to the one that
``make run`` serves. Buttons are numbered; type the number to press one.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import requests

from bot import settings as bot_settings

REQUEST_TIMEOUT_SECONDS = 30


def send(url: str, sender: str, text: str) -> list[dict[str, Any]]:
    """Send one message and return the bot's replies."""
    response = requests.post(
        url, json={"sender": sender, "message": text}, timeout=REQUEST_TIMEOUT_SECONDS
    )
    response.raise_for_status()
    replies: list[dict[str, Any]] = response.json()
    return replies


def render(replies: list[dict[str, Any]]) -> list[str]:
    """Print the replies and return the payloads of their buttons, in order."""
    payloads: list[str] = []
    for reply in replies:
        if reply.get("text"):
            print(f"bot> {reply['text']}")
        for button in reply.get("buttons") or []:
            payloads.append(button.get("payload", button.get("title", "")))
            print(f"     [{len(payloads)}] {button.get('title', '')}")
    return payloads


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bot shell [--sender ID] [--url URL]``."""
    settings = bot_settings.current()
    default_url = f"http://127.0.0.1:{settings.rasa_port}/webhooks/rest/webhook"
    parser = argparse.ArgumentParser(prog="python -m bot shell", description=__doc__)
    parser.add_argument(
        "--sender",
        default="demo-alice",
        help="conversation id (demo-alice is linked to a demo contact)",
    )
    parser.add_argument("--url", default=default_url)
    args = parser.parse_args(argv)

    print(f"Chatting as '{args.sender}' with {args.url}. Ctrl-D or /quit to leave.")
    payloads: list[str] = []
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text in {"/quit", "/exit"}:
            return 0
        if text.isdigit() and 0 < int(text) <= len(payloads):
            text = payloads[int(text) - 1]
        if not text:
            continue
        try:
            payloads = render(send(args.url, args.sender, text))
        except requests.RequestException as error:
            print(
                f"Cannot reach the assistant at {args.url} ({type(error).__name__}). "
                "Is `make run` running?",
                file=sys.stderr,
            )
            return 1
