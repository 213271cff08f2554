"""The simulated customers of ``python -m bench.load``: scripted conversations over the
REST channel, each turn timed and classified.

Two personas take turns (customer 0, 2, 4... and 1, 3, 5...), both built on the demo
CRM of ``crm_bridge.seed``:

- *linked*: a REST sender linked beforehand (as a link token would) to Alice; she checks
  order 10001 and returns the rain jacket of order 10002 (a CRM write);
- *proving*: an unknown sender checks order 10005 with its number and Chloé's email (the
  identity proof the bot asks for, which links the sender), then asks for a person (a
  handoff and its ticket: CRM writes) instead of saying goodbye.

Each conversation opens with a greeting and a shop question, runs its CRM flow, and is
padded with shop questions (``faq`` turns) to ``turns`` messages. Turn kinds: ``faq``
(a shop question, answered by the model alone), ``chat`` (greeting, thanks, goodbye) and
``crm`` (the action server reads or writes the CRM). Customers send their next message as
soon as the reply arrives (a closed loop, no think time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

REQUEST_TIMEOUT_S = 120
MAX_SECONDS = 1800  # the whole drive, however many customers and turns


@dataclass(frozen=True)
class Turn:
    """One customer message, its kind, and a text the bot's replies must contain."""

    text: str
    kind: str
    expect: str = ""


FAQS = (
    Turn("what are your opening hours?", "faq", "Monday to Friday"),
    Turn("how much is shipping?", "faq", "Standard delivery"),
    Turn("what payment methods do you accept?", "faq", "PayPal"),
    Turn("how long do I have to return something?", "faq", "30 days"),
    Turn("do you ship to the US?", "faq", "We ship to"),
    Turn("do you sell gift cards?", "faq", "Gift cards"),
    Turn("is there a warranty?", "faq", "2-year warranty"),
)
GREETING = Turn("hi", "chat", "How can I help")
LINKED_FLOW = (
    Turn("where is my order 10001?", "crm", "DPD-5521"),
    Turn("I want to return something", "crm"),
    Turn("10002", "crm", "which item"),
    Turn("the rain jacket", "crm"),
    Turn("it's too small", "crm", "R-"),
)
LINKED_CLOSING = (Turn("thanks!", "chat", "welcome"), Turn("bye", "chat", "Goodbye"))
PROVING_FLOW = (
    Turn("where is my order?", "crm", "order number"),
    Turn("10005", "crm", "email"),
    Turn("chloe@example.com", "crm", "UPS-1Z999"),
)
PROVING_CLOSING = (
    Turn("thanks!", "chat", "welcome"),
    Turn("I want to talk to a human", "crm", "support team"),
)
LINKED_EMAIL = "alice@example.com"


def is_linked(customer: int) -> bool:
    """Whether this customer plays the linked persona (the others prove themselves)."""
    return customer % 2 == 0


def conversation(customer: int, turns: int) -> list[Turn]:
    """The customer's script: at least its flow, padded with shop questions to ``turns``."""
    flow, closing = (
        (LINKED_FLOW, LINKED_CLOSING) if is_linked(customer) else (PROVING_FLOW, PROVING_CLOSING)
    )
    fixed = 2 + len(flow) + len(closing)  # the greeting and the first shop question
    padding = max(0, turns - fixed)
    # Each customer starts at another question, so the model sees a mix at every moment.
    faqs = [FAQS[(customer + n) % len(FAQS)] for n in range(1 + padding)]
    return [GREETING, faqs[0], *flow, *faqs[1:], *closing]


def faq_conversation(customer: int, turns: int) -> list[Turn]:
    """Shop questions only: what bare Rasa (no action server, no CRM) can answer."""
    return [FAQS[(customer + n) % len(FAQS)] for n in range(turns)]


@dataclass
class TurnRecord:
    """What one customer message cost and what came back."""

    customer: int
    position: int  # 1-based, within the conversation
    kind: str
    seconds: float
    ok: bool  # HTTP 200 with at least one reply
    expected: bool  # the replies contain the script's text
    replies: list[dict] = field(default_factory=list)
    backend: str = ""  # which Rasa server answered (the balancer's header), if known
    error: str = ""


@dataclass
class Conversation:
    """One customer's sender id, script and records."""

    customer: int
    sender: str
    script: list[Turn]
    records: list[TurnRecord] = field(default_factory=list)


BACKEND_HEADER = "X-Rapport-Backend"


def send(session: requests.Session, webhook: str, sender: str, turn: Turn) -> TurnRecord:
    """One REST turn, timed; failures are recorded, not raised."""
    started = time.perf_counter()
    try:
        response = session.post(
            webhook, json={"sender": sender, "message": turn.text}, timeout=REQUEST_TIMEOUT_S
        )
        seconds = time.perf_counter() - started
        replies = response.json() if response.status_code == 200 else []
        error = "" if response.status_code == 200 else f"HTTP {response.status_code}"
        backend = response.headers.get(BACKEND_HEADER, "")
    except (requests.RequestException, ValueError) as failure:
        seconds, replies, backend = time.perf_counter() - started, [], ""
        error = type(failure).__name__
    if not error and not replies:
        error = "no reply"
    said = " ".join(str(reply.get("text", "")) for reply in replies).lower()
    return TurnRecord(
        customer=-1,
        position=0,
        kind=turn.kind,
        seconds=seconds,
        ok=not error,
        expected=not error and turn.expect.lower() in said,
        replies=replies,
        backend=backend,
        error=error,
    )


def talk(webhook: str, chat: Conversation, deadline: float) -> None:
    """Play one customer's script to the end (or the deadline), one message at a time."""
    with requests.Session() as session:
        for position, turn in enumerate(chat.script, start=1):
            if time.monotonic() > deadline:
                return
            record = send(session, webhook, chat.sender, turn)
            record.customer, record.position = chat.customer, position
            chat.records.append(record)


@dataclass
class Drive:
    """The conversations of one run and its wall time."""

    conversations: list[Conversation]
    seconds: float

    @property
    def records(self) -> list[TurnRecord]:
        """Every turn of every conversation."""
        return [record for chat in self.conversations for record in chat.records]


def drive(
    webhook: str,
    senders: list[str],
    script_of: Callable[[int], list[Turn]],
    ramp_seconds: float = 1.0,
) -> Drive:
    """Every customer at once (one thread each), their starts spread over ``ramp_seconds``
    so that they do not all open with the same message in the same millisecond."""
    chats = [
        Conversation(customer, sender, script_of(customer))
        for customer, sender in enumerate(senders)
    ]
    deadline = time.monotonic() + MAX_SECONDS
    started = time.perf_counter()
    step = ramp_seconds / max(1, len(chats))
    with ThreadPoolExecutor(max_workers=max(1, len(chats))) as pool:
        futures = [
            pool.submit(_after, index * step, webhook, chat, deadline)
            for index, chat in enumerate(chats)
        ]
        for future in futures:
            future.result()  # a bug in a customer thread must not pass silently
    return Drive(chats, time.perf_counter() - started)


def _after(delay: float, webhook: str, chat: Conversation, deadline: float) -> None:
    time.sleep(delay)
    talk(webhook, chat, deadline)
