"""The audit of ``python -m bench.load``: after the run, does the CRM hold exactly what
the customers said and were told?

For each of the run's senders the CRM must hold one Interaction whose inbound transcript
lines are the messages sent, in order, and whose outbound lines are the replies the REST
channel returned, in order; and one return request per return the bot confirmed, one
handoff per handoff it confirmed. The interaction log is written off the request (in
process, or by the RabbitMQ consumer), so the audit waits for it to catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from bench.load_drive import Drive
from crm_bridge import models
from crm_bridge.db import session_factory

DRAIN_TIMEOUT_S = 600
# A mismatch is reported once the CRM's counts have stopped changing this long.
SETTLE_S = 20
POLL_S = 0.5
SHOWN_MISMATCHES = 10


def rest_texts(text: str, has_buttons: bool) -> list[str]:
    """The REST replies one outbound line was sent as: Rasa's collecting channel splits a
    text without buttons at blank lines (``CollectingOutputChannel.send_text_message``)."""
    if has_buttons:
        return [text]
    return text.strip().split("\n\n")


@dataclass
class Transcript:
    """One sender's side of the audit: what was said and answered."""

    inbound: list[str] = field(default_factory=list)
    outbound: list[str] = field(default_factory=list)
    interactions: int = 1


@dataclass
class Expected:
    """What the run's customers sent and received, as the CRM should hold it."""

    transcripts: dict[str, Transcript]
    returns: int
    handoffs: int


def expected_from(run: Drive) -> Expected:
    """The transcripts the drive's answered turns should have left, and the confirmed
    returns ("R-" in the reply) and handoffs ("support team")."""
    transcripts: dict[str, Transcript] = {}
    returns = handoffs = 0
    for chat in run.conversations:
        mine = transcripts.setdefault(chat.sender, Transcript())
        for turn, record in zip(chat.script, chat.records, strict=False):
            if not record.ok:
                continue
            mine.inbound.append(turn.text)
            mine.outbound.extend(str(reply.get("text", "")) for reply in record.replies)
            if record.expected and turn.expect == "R-":
                returns += 1
            if record.expected and turn.expect == "support team":
                handoffs += 1
    return Expected(transcripts, returns, handoffs)


def transcripts_in_crm(crm_url: str, prefix: str) -> dict[str, Transcript]:
    """Every Interaction of the senders starting with ``prefix``, as transcripts."""
    found: dict[str, Transcript] = {}
    with session_factory(crm_url)() as session:
        interactions = session.execute(
            select(models.Interaction)
            .where(models.Interaction.sender_id.like(f"{prefix}%"))
            .order_by(models.Interaction.started_at)
        ).scalars()
        for interaction in interactions:
            mine = found.get(interaction.sender_id)
            if mine is None:
                mine = found[interaction.sender_id] = Transcript(interactions=0)
            mine.interactions += 1
            for line in interaction.messages:
                if line.direction == "inbound":
                    mine.inbound.append(line.text)
                else:
                    mine.outbound.extend(rest_texts(line.text, bool(line.buttons)))
    return found


def difference(want: Transcript, have: Transcript, part: str) -> str:
    """Where a sender's transcript part differs, in a few words (no customer text)."""
    expected, found = getattr(want, part), getattr(have, part)
    if part == "interactions":
        return f"{found} Interactions, expected {expected}"
    first = next(
        (n for n, (a, b) in enumerate(zip(expected, found, strict=False)) if a != b),
        min(len(expected), len(found)),
    )
    return f"{len(found)} lines, expected {len(expected)}; the first difference at line {first + 1}"


def _count_of_senders(session: Any, model: Any, prefix: str) -> int:
    """Rows of ``model`` (which has an ``interaction_id``) in the senders' Interactions."""
    result: int = session.execute(
        select(func.count())
        .select_from(model)
        .join(models.Interaction, model.interaction_id == models.Interaction.id)
        .where(models.Interaction.sender_id.like(f"{prefix}%"))
    ).scalar_one()
    return result


def crm_counts(crm_url: str, prefix: str) -> dict[str, int]:
    """Cheap counts to poll: the senders' transcript lines, returns and handoffs."""
    with session_factory(crm_url)() as session:
        return {
            name: _count_of_senders(session, model, prefix)
            for name, model in (
                ("lines", models.InteractionMessage),
                ("returns", models.ReturnRequest),
                ("handoffs", models.Handoff),
            )
        }


def compare(expected: Expected, crm_url: str, prefix: str) -> dict[str, Any]:
    """The audit: expected and found counts, the first mismatching senders, and whether
    everything matches exactly."""
    found = transcripts_in_crm(crm_url, prefix)
    counts = crm_counts(crm_url, prefix)
    mismatches = []
    for sender in sorted(set(expected.transcripts) | set(found)):
        want, have = expected.transcripts.get(sender), found.get(sender)
        if want is None or have is None:
            mismatches.append(
                {"sender": sender, "problem": "unexpected", "detail": "in the CRM, never sent"}
                if want is None
                else {"sender": sender, "problem": "missing", "detail": "sent, not in the CRM"}
            )
            continue
        mismatches.extend(
            {"sender": sender, "problem": f"{part} differ", "detail": difference(want, have, part)}
            for part in ("interactions", "inbound", "outbound")
            if getattr(want, part) != getattr(have, part)
        )
    wanted = list(expected.transcripts.values())
    had = list(found.values())
    figures = {
        "senders": {"expected": len(wanted), "found": len(had)},
        "interactions": {"expected": len(wanted), "found": sum(t.interactions for t in had)},
        "inbound_lines": {
            "expected": sum(len(t.inbound) for t in wanted),
            "found": sum(len(t.inbound) for t in had),
        },
        "outbound_replies": {
            "expected": sum(len(t.outbound) for t in wanted),
            "found": sum(len(t.outbound) for t in had),
        },
        "transcript_lines": counts["lines"],
        "returns": {"expected": expected.returns, "found": counts["returns"]},
        "handoffs": {"expected": expected.handoffs, "found": counts["handoffs"]},
    }
    matches = not mismatches and all(
        value["expected"] == value["found"] for value in figures.values() if isinstance(value, dict)
    )
    return {**figures, "mismatches": mismatches[:SHOWN_MISMATCHES], "matches": matches}


def wait_and_audit(
    expected: Expected,
    crm_url: str,
    prefix: str,
    timeout: float = DRAIN_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], float]:
    """Poll the CRM until the audit matches (or its counts stop changing for ``SETTLE_S``,
    or ``timeout``); the audit, and the seconds the log took to catch up (the drain)."""
    started = clock()
    last: dict[str, int] = {}
    last_change = started
    while clock() - started < timeout:
        counts = crm_counts(crm_url, prefix)
        if counts != last:
            last, last_change = counts, clock()
            # The full comparison reads every line: only once the cheap counts allow it.
            if _caught_up(expected, counts):
                audit = compare(expected, crm_url, prefix)
                if audit["matches"]:
                    return audit, last_change - started
        elif clock() - last_change > SETTLE_S:
            break
        time.sleep(POLL_S)
    # The drain is over when the counts stopped changing, whether or not they match.
    return compare(expected, crm_url, prefix), last_change - started


def _caught_up(expected: Expected, counts: dict[str, int]) -> bool:
    # Each answered turn left one inbound line and at least one outbound line (a line
    # may have gone out as several REST replies, so the exact count is not known here).
    least_lines = sum(2 * len(t.inbound) for t in expected.transcripts.values())
    return (
        counts["lines"] >= least_lines
        and counts["returns"] >= expected.returns
        and counts["handoffs"] >= expected.handoffs
    )
