"""``python -m bench.load``: many customers at once, whole conversations, and an audit.

Starts the assistant on loopback in a chosen shape (``--shape embedded``, as ``make run``;
or ``--shape production``: ``--rasa-processes`` Rasa servers behind HAProxy, PostgreSQL
CRM, Redis stores, RabbitMQ and the CRM consumer; see ``bench/load_shapes.py``) and
drives ``--customers`` simulated customers at once through scripted conversations over
the REST channel (greeting, shop questions, order status with the identity proof the
bot asks for, a return, a handoff, goodbye; ``--turns`` messages each, padded with shop
questions; see ``bench/load_drive.py``). Then it audits the CRM: one Interaction per
customer holding exactly the messages sent and the replies received, and the returns
and handoffs the bot confirmed. In the same run it drives bare Rasa (``rasa run`` with
the same model, no endpoints) with shop questions only (``--bare-turns`` each), so the
figures are also ratios on the same machine.

Prints a table and writes ``bench/results/load.json``: messages per second; p50/p95/p99
by turn kind (faq, crm, chat); mean latency by position in the conversation (turns 1-10,
11-20, ...); CPU seconds and peak RSS of each process during the run; errors; the audit.
The exit status is 1 when the audit does not match exactly or a message failed.

Example:
  python -m bench.load --smoke
  python -m bench.load --customers 20 --turns 30
  python -m bench.load --shape production --rasa-processes 2 --customers 20 --turns 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.load_audit import expected_from, wait_and_audit
from bench.load_drive import (
    FAQS,
    GREETING,
    LINKED_EMAIL,
    PROVING_FLOW,
    Turn,
    conversation,
    drive,
    faq_conversation,
    is_linked,
)
from bench.load_metrics import (
    ProcessSample,
    drive_figures,
    machine,
    own_cpu_s,
    process_figures,
    sample_all,
)
from bench.load_report import print_report, ratios
from bench.load_shapes import (
    BALANCERS,
    Stack,
    StackError,
    bare_rasa,
    embedded,
    find_balancer,
    production,
)
from bench.servers import PROJECT_ROOT

SMOKE = {"customers": 2, "turns": 8, "bare_turns": 3}


@dataclass(frozen=True)
class Options:
    """What one run drives."""

    customers: int
    turns: int
    bare_turns: int  # 0: no bare Rasa phase


def link_linked_customers(crm_url: str, senders: list[str]) -> None:
    """Link the linked persona's senders to the demo customer, as a link token would."""
    from crm_bridge.sql_gateway import SqlCrmGateway

    gateway = SqlCrmGateway.from_url(crm_url)
    contact = gateway.find_contact_by_email(LINKED_EMAIL)
    if contact is None:
        raise StackError(f"the CRM has no {LINKED_EMAIL}: is it seeded?")
    for customer, sender in enumerate(senders):
        if is_linked(customer):
            gateway.link_identity("rest", sender, contact.id, proof="link_token")


def warm_up(webhook: str, script: list[Turn], conversations: int) -> None:
    """A few untimed conversations (senders outside the audit) so that each Rasa server
    has loaded what a first message loads."""
    for number in range(conversations):
        sender = f"warmup-{uuid.uuid4().hex[:8]}-{number}"
        for turn in script:
            requests.post(webhook, json={"sender": sender, "message": turn.text}, timeout=120)


def measured(
    pids: dict[str, int], before: dict[str, ProcessSample], cpu_before: float, messages: int
) -> dict[str, Any]:
    """Process and client figures since ``before`` / ``cpu_before``."""
    after = sample_all(pids)
    figures = process_figures(before, after, messages)
    client = own_cpu_s() - cpu_before
    return {
        "processes": figures,
        "client_cpu_s": round(client, 2),
        "server_cpu_ms_per_message": round(
            1000
            * sum(f["cpu_s"] for name, f in figures.items() if "shared" not in name)
            / max(1, messages),
            1,
        ),
    }


def run_stack(stack: Stack, options: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drive the stack's customers and audit the CRM: the figures and the audit."""
    prefix = f"load-{uuid.uuid4().hex[:8]}-"
    senders = [f"{prefix}{n}" for n in range(options.customers)]
    link_linked_customers(stack.servers.crm_url, senders)
    rasa_servers = max(1, len(stack.servers.rasa_urls))
    # Round robin hands successive messages to successive servers: two conversations per
    # server give each one several warm-up turns, CRM turns included.
    warm_up(stack.webhook, [GREETING, FAQS[0], *PROVING_FLOW], 2 * rasa_servers)
    before, cpu_before = sample_all(stack.pids()), own_cpu_s()
    run = drive(stack.webhook, senders, lambda customer: conversation(customer, options.turns))
    audit, drain = wait_and_audit(expected_from(run), stack.servers.crm_url, prefix)
    figures = drive_figures(run)
    figures["log_drain_s"] = round(drain, 2)
    # The CPU window ends after the drain: the consumer's (or log writer's) work counts.
    figures.update(measured(stack.pids(), before, cpu_before, figures["answered"]))
    figures["unexpected"] = unexpected_examples(run.conversations)
    return figures, audit


def run_bare(model: Path, workdir: Path, options: Options) -> dict[str, Any]:
    """Bare Rasa with the same model: shop questions only, as many customers."""
    with bare_rasa(model, workdir) as (webhook, pids):
        warm_up(webhook, faq_conversation(0, 3), 2)
        before, cpu_before = sample_all(pids), own_cpu_s()
        senders = [f"bare-{uuid.uuid4().hex[:8]}-{n}" for n in range(options.customers)]
        run = drive(webhook, senders, lambda c: faq_conversation(c, options.bare_turns))
        figures = drive_figures(run)
        figures.update(measured(pids, before, cpu_before, figures["answered"]))
        figures["unexpected"] = unexpected_examples(run.conversations)
    return figures


def unexpected_examples(conversations: list[Any], shown: int = 5) -> list[dict[str, Any]]:
    """The first few answered turns whose replies lacked the script's text."""
    examples: list[dict[str, Any]] = []
    for chat in conversations:
        for turn, record in zip(chat.script, chat.records, strict=False):
            if record.ok and not record.expected and len(examples) < shown:
                said = " | ".join(str(reply.get("text", ""))[:80] for reply in record.replies)
                examples.append({"position": record.position, "sent": turn.text, "got": said})
    return examples


def assemble(
    stack: Stack,
    options: Options,
    measured_stack: tuple[dict[str, Any], dict[str, Any]],
    bare: dict[str, Any],
    machine_before: dict[str, Any],
) -> dict[str, Any]:
    """The report of both phases."""
    stack_figures, audit = measured_stack
    return {
        "shape": stack.shape,
        "rasa_processes": max(1, len(stack.servers.rasa_urls)),
        **stack.details,
        "customers": options.customers,
        "turns": options.turns,
        "bare_turns": options.bare_turns,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {**machine_before, "load_average_after": machine()["load_average"]},
        "stack": stack_figures,
        "bare_rasa": bare,
        "ratios": ratios(stack_figures, bare) if bare else {},
        "audit": audit,
    }


def run(stack: Stack, model: Path, workdir: Path, options: Options) -> dict[str, Any]:
    """Both phases against a running stack (bare Rasa started here, in the empty folder
    ``workdir``); the report."""
    before = machine()
    bare = run_bare(model, workdir, options) if options.bare_turns else {}
    return assemble(stack, options, run_stack(stack, options), bare, before)


def start_stack(args: argparse.Namespace, workdir: Path) -> AbstractContextManager[Stack]:
    """The chosen shape's context manager."""
    if args.shape == "production":
        return production(args.model, workdir, args.rasa_processes, args.redis_db, args.balancer)
    return embedded(args.model, workdir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--smoke`` sets tiny counts and the embedded shape)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shape", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--rasa-processes", type=int, default=2, help="production shape only")
    parser.add_argument("--customers", type=int, default=10, help="simulated at once")
    parser.add_argument("--turns", type=int, default=20, help="messages per conversation")
    parser.add_argument("--bare-turns", type=int, help="bare Rasa: per customer (0: skip)")
    parser.add_argument("--redis-db", type=int, help="production: an empty Redis database")
    parser.add_argument(
        "--balancer",
        choices=BALANCERS,
        default="",
        help="production (default: haproxy, else nginx)",
    )
    parser.add_argument("--model", type=Path, help="model archive (default: the bot's own)")
    parser.add_argument("--smoke", action="store_true", help="2 customers, a few turns")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench/results/load.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape = "embedded"
        args.customers, args.turns, args.bare_turns = (
            SMOKE["customers"],
            SMOKE["turns"],
            SMOKE["bare_turns"],
        )
    if args.bare_turns is None:
        args.bare_turns = args.turns
    if min(args.customers, args.turns, args.rasa_processes) < 1 or args.bare_turns < 0:
        parser.error("--customers, --turns and --rasa-processes must be >= 1, --bare-turns >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI: start the stack, run both phases, print and write the report; 1 on a failed
    message or an audit that does not match."""
    args = parse_args(argv)
    if args.model is None:
        from bot.train import train_if_needed

        args.model = train_if_needed()
    options = Options(args.customers, args.turns, args.bare_turns)
    if args.shape == "production":
        try:
            find_balancer(args.balancer)  # before the bare phase: say at once what is missing
        except StackError as error:
            print(f"bench.load: {error}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
        bare_dir, stack_dir = Path(folder) / "bare", Path(folder) / "stack"
        bare_dir.mkdir()
        stack_dir.mkdir()
        before = machine()
        try:
            # Bare Rasa first, alone on the machine; then the stack.
            bare = run_bare(args.model, bare_dir, options) if options.bare_turns else {}
            with start_stack(args, stack_dir) as stack:
                report = assemble(stack, options, run_stack(stack, options), bare, before)
        except StackError as error:
            print(f"bench.load: {error}", file=sys.stderr)
            return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    failed = report["stack"]["errors"] + (report["bare_rasa"] or {}).get("errors", 0)
    if not report["audit"]["matches"]:
        print("AUDIT MISMATCH: the CRM does not hold what was said", file=sys.stderr)
    return 0 if report["audit"]["matches"] and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
