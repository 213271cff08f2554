"""``python -m bot notify``: proactive messages, within consent, quiet hours and each
channel's limits.

  python -m bot notify --topic order_updates --order 10001 [--dry-run]
  python -m bot notify --topic offers --text "20% off rain jackets" [--campaign spring]
  python -m bot notify --deliver        # send what is due (retries, kept messages); cron it
  python -m bot notify --status [--reference order:10001:shipped]

Planning (``crm_bridge.notifications``) picks each contact's channel with
``crm_bridge.proactive.can_send`` and queues a row per message; delivery asks
``can_send`` again right before each send (consent may have changed), paces every
platform (``crm_bridge.pacing``: Telegram 30 a second overall and one a second per chat,
Slack about one a second per conversation with short bursts), honours a 429's "retry
after", and retries failures with back-off. The agent API's ``POST /agents/api/notify``
calls :func:`notify` too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot import settings as bot_settings
from bot.notify_senders import RateLimited, Sender, SendError, build_senders
from crm_bridge.consent import TOPIC_DEFAULTS
from crm_bridge.db import session_factory
from crm_bridge.errors import InvalidInput, RapportError
from crm_bridge.models import utcnow
from crm_bridge.notifications import (
    MAX_ATTEMPTS,
    Message,
    NotificationQueue,
    NotificationView,
    PlanLine,
)
from crm_bridge.proactive import CHANNELS
from crm_bridge.quiet_hours import QuietHours

# A 429 is waited out this many times within one run; then the row waits for a later run.
RATE_LIMIT_RETRIES = 3


@dataclass(frozen=True)
class Result:
    """What became of one queued notification in this run."""

    notification: NotificationView
    status: str  # sent | waiting | retrying | failed
    reason: str = ""


@dataclass
class NotifyReport:
    """A run: what planning decided and what delivery did."""

    planned: list[PlanLine] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (contact ids and references, never names or addresses)."""
        return {
            "dry_run": self.dry_run,
            "planned": [
                {
                    "contact": line.message.contact_id,
                    "reference": line.message.reference,
                    "channel": line.decision.channel,
                    "queued": bool(line.notification_id) and not line.existing,
                    "already_planned": line.existing,
                    "allowed_now": line.decision.allowed,
                    "reason": line.decision.reason,
                }
                for line in self.planned
            ],
            "results": [
                {
                    "notification": r.notification.id,
                    "contact": r.notification.contact_id,
                    "channel": r.notification.channel,
                    "reference": r.notification.reference,
                    "status": r.status,
                    "reason": r.reason,
                }
                for r in self.results
            ],
        }


async def deliver(
    queue: NotificationQueue, senders: dict[str, Sender], quiet: QuietHours
) -> list[Result]:
    """Send every due notification: one queue per channel (each paced by its sender),
    the channels side by side."""
    due = await asyncio.to_thread(queue.take_due)
    by_channel: dict[str, list[NotificationView]] = {}
    for notification in due:
        by_channel.setdefault(notification.channel, []).append(notification)
    batches = await asyncio.gather(
        *(
            _deliver_channel(queue, senders.get(channel), items, quiet)
            for channel, items in by_channel.items()
        )
    )
    return [result for batch in batches for result in batch]


async def _deliver_channel(
    queue: NotificationQueue,
    sender: Sender | None,
    items: list[NotificationView],
    quiet: QuietHours,
) -> list[Result]:
    results = []
    for item in items:
        results.append(await _deliver_one(queue, sender, item, quiet))
    return results


async def _deliver_one(
    queue: NotificationQueue,
    sender: Sender | None,
    item: NotificationView,
    quiet: QuietHours,
) -> Result:
    def call(fn: Callable[..., NotificationView], *args: Any) -> Awaitable[NotificationView]:
        return asyncio.to_thread(fn, *args)

    decision = await asyncio.to_thread(queue.decide_now, item, quiet)
    if not decision.allowed:
        if decision.later:
            row = await call(queue.mark_waiting, item.id, decision)
            return Result(row, row.status, row.last_error or "")
        row = await call(queue.mark_refused, item.id, decision.reason)
        return Result(row, "failed", row.last_error or "")
    if sender is None:
        return await _failed(queue, item, f"{item.channel} is not configured in this process")
    wait_for = 1.0
    for _ in range(RATE_LIMIT_RETRIES):
        try:
            await sender.send(item.external_id, item.text)
        except RateLimited as error:
            sender.pacer.hold(error.retry_after)
            wait_for = error.retry_after
            continue
        except SendError as error:
            return await _failed(queue, item, str(error))
        return Result(await call(queue.mark_sent, item.id), "sent")
    when = utcnow() + timedelta(seconds=wait_for)
    row = await call(queue.retry_at, item.id, when, f"rate limited by {item.channel}")
    return Result(row, "retrying", row.last_error or "")


async def _failed(queue: NotificationQueue, item: NotificationView, error: str) -> Result:
    row = await asyncio.to_thread(queue.mark_failed, item.id, error)
    if row.status == "failed":
        return Result(row, "failed", f"{error} (gave up after {row.attempts} attempts)")
    when = f"{row.next_attempt_at:%H:%M:%S} UTC"
    progress = f"attempt {row.attempts} of {MAX_ATTEMPTS}, next {when}"
    return Result(row, "retrying", f"{error} ({progress})")


def messages_for(
    queue: NotificationQueue, topic: str, order: str = "", text: str = "", campaign: str = ""
) -> list[Message]:
    """The messages a request names: an order's update, or a campaign to every contact."""
    if topic not in TOPIC_DEFAULTS:
        raise InvalidInput("topic", f"The topics are: {', '.join(TOPIC_DEFAULTS)}.")
    if topic == "order_updates":
        if not order:
            raise InvalidInput("order", "Order updates need an order number (--order).")
        return [queue.order_message(order)]
    if not text:
        raise InvalidInput("text", "A campaign needs its text (--text).")
    return queue.campaign_messages(topic, text, campaign)


async def notify(
    queue: NotificationQueue,
    senders: dict[str, Sender],
    quiet: QuietHours,
    messages: list[Message] | None = None,
    channels: list[str] | None = None,
    dry_run: bool = False,
) -> NotifyReport:
    """Plan ``messages`` (if any), then deliver everything due (unless ``dry_run``: then
    only say who would get what and why others would not)."""
    report = NotifyReport(dry_run=dry_run)
    if messages:
        report.planned = await asyncio.to_thread(queue.plan, messages, quiet, channels, dry_run)
    if not dry_run:
        report.results = await deliver(queue, senders, quiet)
    return report


def render(report: NotifyReport) -> str:
    """The report for a terminal: contact ids and references, no personal data."""
    out: list[str] = []
    if report.dry_run:
        out.append("Dry run: nothing was sent or written.")
    verb = "Would" if report.dry_run else "Will"
    fresh = [p for p in report.planned if not p.existing]
    groups = {
        f"{verb} send now": [p for p in fresh if p.decision.allowed],
        f"{verb} keep for later": [p for p in fresh if p.decision.later],
        "Not sent": [p for p in fresh if not (p.decision.allowed or p.decision.later)],
        "Already planned earlier": [p for p in report.planned if p.existing],
    }
    for title, lines in groups.items():
        if lines:
            out.append(f"{title} ({len(lines)}):")
        for p in lines:
            where = f" on {p.decision.channel}" if p.decision.channel else ""
            what = p.message.text if p.decision.allowed and report.dry_run else p.decision.reason
            if p.existing:
                what = f"{p.message.reference} (notification #{p.notification_id})"
            out.append(f"  contact #{p.message.contact_id}{where}: {what}")
    for status in ("sent", "waiting", "retrying", "failed"):
        results = [r for r in report.results if r.status == status]
        if results:
            out.append(f"{status.capitalize()} ({len(results)}):")
        for r in results:
            n = r.notification
            tail = f": {r.reason}" if r.reason else ""
            out.append(f"  #{n.id} contact #{n.contact_id} on {n.channel}, {n.reference}{tail}")
    return "\n".join(out) or "Nothing to send."


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="python -m bot notify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--topic", choices=list(TOPIC_DEFAULTS))
    top.add_argument("--order", default="", help="the order whose status to tell its customer")
    top.add_argument("--text", default="", help="a campaign's text (to every contact)")
    top.add_argument("--campaign", default="", help="the campaign's name (default: from its text)")
    top.add_argument("--channel", action="append", choices=CHANNELS, help="only this channel")
    top.add_argument("--dry-run", action="store_true", help="say who would get what; write nothing")
    top.add_argument("--deliver", action="store_true", help="only send what is due")
    top.add_argument(
        "--every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --deliver: keep running, delivering what is due this often (a worker)",
    )
    top.add_argument("--status", action="store_true", help="list the latest notifications")
    top.add_argument("--reference", default="", help="with --status: one reference")
    return top


def queue_for(settings: bot_settings.Settings) -> NotificationQueue:
    """The notification queue on the configured CRM."""
    crm = settings.crm
    return NotificationQueue(
        session_factory(crm.database_url),
        session_timeout=timedelta(minutes=crm.session_timeout_minutes),
    )


async def notify_request(
    settings: bot_settings.Settings,
    topic: str = "",
    order: str = "",
    text: str = "",
    campaign: str = "",
    channels: list[str] | None = None,
    dry_run: bool = False,
    web_inbox: Any = None,
) -> NotifyReport:
    """The use case behind the CLI and ``POST /agents/api/notify``: plan a topic's
    messages (none: only deliver what is due) and send them with this settings' senders."""
    queue = queue_for(settings)
    quiet = QuietHours.parse(settings.crm.quiet_hours, settings.crm.quiet_hours_timezone)
    for channel in channels or []:
        if channel not in CHANNELS:
            raise InvalidInput("channels", f"The channels are: {', '.join(CHANNELS)}.")
    messages = None
    if topic:
        messages = await asyncio.to_thread(messages_for, queue, topic, order, text, campaign)
    senders = {} if dry_run else build_senders(settings, web_inbox)
    try:
        return await notify(queue, senders, quiet, messages, channels or None, dry_run)
    finally:
        await asyncio.gather(*(sender.close() for sender in senders.values()))


async def _run(args: argparse.Namespace, settings: bot_settings.Settings) -> str:
    if args.status:
        rows = await asyncio.to_thread(queue_for(settings).list, args.reference or None)
        return (
            "\n".join(
                f"#{n.id} {n.status:<8} contact #{n.contact_id} on {n.channel}, {n.reference}, "
                f"{n.attempts} attempt(s){': ' + n.last_error if n.last_error else ''}"
                for n in rows
            )
            or "No notifications."
        )
    if not args.deliver and not args.topic:
        raise InvalidInput("topic", "Name a --topic (or use --deliver or --status).")
    report = await notify_request(
        settings,
        "" if args.deliver else args.topic,
        args.order,
        args.text,
        args.campaign,
        args.channel,
        args.dry_run,
    )
    return render(report)


async def _deliver_forever(args: argparse.Namespace, settings: bot_settings.Settings) -> None:
    """The delivery worker: retries and kept messages go out without anyone asking. A
    failed round (the CRM down) is reported and the next one tries again."""
    while True:
        try:
            report = await notify_request(settings, channels=args.channel)
            if report.results:
                print(render(report), flush=True)
        except RapportError as error:
            print(f"notify: {error}", file=sys.stderr, flush=True)
        await asyncio.sleep(args.every)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 2 with one line when the request or the CRM fails."""
    args = parser().parse_args(argv)
    settings = bot_settings.current()
    try:
        settings.validate()
        if args.every:
            if not args.deliver or args.every < 1:
                raise InvalidInput("every", "--every needs --deliver and at least 1 second.")
            asyncio.run(_deliver_forever(args, settings))
            return 0
        print(asyncio.run(_run(args, settings)))
    except RapportError as error:
        print(f"notify: {error}", file=sys.stderr)
        return 2
    return 0
