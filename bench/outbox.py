"""``python -m bench.outbox``: how fast do conversations reach a remote CRM, limits on?

Starts the fake HubSpot or Salesforce API on 127.0.0.1 (tests/fakes, written from the
public API docs), records ``--conversations`` conversations of ``--customers`` customers
through the real gateway and interaction log into a fresh SQLite CRM (each links a
Telegram identity and closes, so each becomes a contact upsert and a logged
conversation in the outbox), then runs the outbox worker with the real adapter and the
real rate limits (HubSpot: 190 requests per 10 s and 4 searches per second; Salesforce:
the daily share). Prints and writes (``bench/results/outbox.json``) the conversations
delivered per second, the delay from a conversation's close to its remote record
(p50/p95/max) and the requests the fake received.

Example:
  python -m bench.outbox --backend hubspot --conversations 300 --customers 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.nlu.metrics import percentile
from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.gateway import ConversationRef
from crm_bridge.interaction_log import InteractionLog
from crm_bridge.migrate import upgrade
from crm_bridge.outbox import OutboxWorker
from crm_bridge.remote.base import RemoteCrm
from crm_bridge.settings import PROJECT_ROOT, CrmSettings
from crm_bridge.sql_gateway import SqlCrmGateway

TOKEN = "bench-token-0123456789"  # noqa: S105 (the fake APIs' token)
MAX_SECONDS = 900


def fake_and_adapter(backend: str) -> tuple[Any, RemoteCrm]:
    """The fake API (started) and the adapter pointed at it, as the worker builds it."""
    if backend == "hubspot":
        from crm_bridge.remote.hubspot import HubSpotCrm
        from tests.fakes.hubspot_api import FakeHubSpotApi

        hubspot = FakeHubSpotApi(TOKEN)
        hubspot.start()
        settings = CrmSettings(
            crm_backend="hubspot",
            hubspot_access_token=TOKEN,
            hubspot_api_base_url=hubspot.root_url,
            hubspot_mapping=PROJECT_ROOT / "crm" / "hubspot.yml",
        )
        return hubspot, HubSpotCrm.from_settings(settings)
    from crm_bridge.remote.salesforce import SalesforceCrm
    from tests.fakes.salesforce_api import FakeSalesforceApi

    salesforce = FakeSalesforceApi(TOKEN)
    salesforce.start()
    settings = CrmSettings(
        crm_backend="salesforce",
        salesforce_instance_url=salesforce.root_url,
        salesforce_access_token=TOKEN,
        salesforce_mapping=PROJECT_ROOT / "crm" / "salesforce.yml",
    )
    return salesforce, SalesforceCrm.from_settings(settings)


def session_events(sender: str, at: float) -> list[dict[str, Any]]:
    """The events Rasa sends when a conversation session starts."""
    return [
        {
            "sender_id": sender,
            "event": "action",
            "timestamp": at - 0.001,
            "name": "action_session_start",
        },
        {"sender_id": sender, "event": "session_started", "timestamp": at},
        {"sender_id": sender, "event": "action", "timestamp": at + 0.001, "name": "action_listen"},
    ]


def record_conversations(url: str, backend: str, conversations: int, customers: int) -> None:
    """Customers and their closed conversations, through the real writers."""
    factory = session_factory(url)
    with unit_of_work(factory) as session:
        session.add_all(
            models.Contact(name=f"Customer {n}", email=f"customer{n}@example.com")
            for n in range(customers)
        )
    with unit_of_work(factory) as session:
        ids = list(session.execute(select(models.Contact.id).order_by(models.Contact.id)).scalars())
    gateway = SqlCrmGateway(factory, outbox_backend=backend)
    log = InteractionLog(factory, outbox_backend=backend)
    start = time.time() - 3600
    for n in range(conversations):
        sender, t0 = str(7_000_000 + n % customers), start + n
        gateway.link_identity(
            "telegram", sender, ids[n % customers], ConversationRef(sender, "telegram", t0)
        )
        log.record_events(
            [
                *session_events(sender, t0),
                {
                    "sender_id": sender,
                    "event": "user",
                    "timestamp": t0 + 0.1,
                    "text": "where is my order?",
                    "input_channel": "telegram",
                    "parse_data": {"intent": {"name": "order_status", "confidence": 0.9}},
                },
                {"sender_id": sender, "event": "bot", "timestamp": t0 + 0.2, "text": "On its way."},
            ]
        )
    for n in range(customers):  # a last new session closes each customer's conversation
        log.record_events(session_events(str(7_000_000 + n), start + conversations + n))


def deliver(url: str, adapter: RemoteCrm) -> tuple[float, list[float]]:
    """Seconds to deliver everything, and each conversation's close-to-remote delay."""
    factory = session_factory(url)
    worker = OutboxWorker(factory, adapter)
    started = time.monotonic()
    while time.monotonic() - started < MAX_SECONDS:
        report = worker.run_once(limit=200)
        with unit_of_work(factory) as session:
            waiting = session.execute(
                select(models.OutboxEvent.id).where(models.OutboxEvent.status == "pending")
            ).first()
        if waiting is None:
            break
        if not report.delivered:
            time.sleep(0.2)
    elapsed = time.monotonic() - started
    with unit_of_work(factory) as session:
        # From the close being recorded (with the local write) to the remote record.
        delivered = session.execute(
            select(models.OutboxEvent.created_at, models.OutboxEvent.delivered_at).where(
                models.OutboxEvent.kind == "conversation_logged",
                models.OutboxEvent.status == "delivered",
            )
        ).all()
        delays = [(at - recorded).total_seconds() for recorded, at in delivered if at is not None]
    return elapsed, delays


def run(backend: str, conversations: int, customers: int) -> dict[str, Any]:
    """Record, deliver, and measure; the figures as a dict."""
    fake, adapter = fake_and_adapter(backend)
    try:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'crm.db'}"
            upgrade(url)
            record_conversations(url, backend, conversations, customers)
            elapsed, delays = deliver(url, adapter)
    finally:
        fake.stop()
    return {
        "backend": backend,
        "conversations": conversations,
        "customers": customers,
        "delivered": len(delays),
        "seconds": round(elapsed, 2),
        "conversations_per_second": round(len(delays) / elapsed, 1) if elapsed else 0.0,
        "delay_p50_s": round(percentile(delays, 50), 2) if delays else None,
        "delay_p95_s": round(percentile(delays, 95), 2) if delays else None,
        "delay_max_s": round(max(delays), 2) if delays else None,
        "requests_at_fake": len(fake.calls),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print a table, write bench/results/outbox.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--backend", choices=("hubspot", "salesforce"), default="hubspot")
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench/results/outbox.json")
    args = parser.parse_args(argv)
    if not 1 <= args.customers <= args.conversations:
        parser.error("--customers must be between 1 and --conversations")
    figures = run(args.backend, args.conversations, args.customers)
    for name, value in figures.items():
        print(f"{name:<26} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["delivered"] == args.conversations else 1


if __name__ == "__main__":
    sys.exit(main())
