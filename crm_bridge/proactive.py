"""Whether one proactive message may go to one customer on one channel now: ``can_send``.

A proactive message is one the customer did not just ask for: an order update, an offer.
The decision is pure: everything it needs (consent, the customer's identities on each
channel, their open web chat sessions, the quiet hours) is given to it, so it is tested
with a fixed ``now`` and asked twice, when a message is planned and again right before
it is sent (consent may have changed in between). Rate limits are the senders' business
(``crm_bridge.pacing``): they delay a message, they never refuse one.

The channels' own rules:

- **Telegram**: a bot may only write to chats that started it, so only a customer with a
  Telegram identity (they wrote to us) is reachable, and only in their private chat: a
  group member's identity (``chat:user``) would put their order in front of the group.
- **Slack**: a direct message to a user of the workspace we have talked to.
- **Web chat**: a page cannot be written to, it collects its messages; only while the
  customer has a session open is a message delivered, otherwise it is kept for their next
  visit. Quiet hours do not apply there: the message only appears in a page the
  customer has open, which wakes nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge import models
from crm_bridge.consent import ALL_CHANNELS, TOPIC_DEFAULTS
from crm_bridge.quiet_hours import NO_QUIET_HOURS, QuietHours

#: The channels that can carry a message the customer did not just ask for (REST cannot:
#: it only answers within a request).
CHANNELS = ("telegram", "slack", "web")


@dataclass(frozen=True)
class Reach:
    """What the CRM knows about reaching one contact.

    ``consent``: (topic, channel) -> allowed, as ``crm_bridge.consent`` decides it (a
    missing entry: the topic's default). ``identities``: channel -> the contact's ids on
    it, the most recently used channel and id first. ``open_web_sessions``: the web chat
    conversations with a session open now.
    """

    contact_id: int
    consent: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    identities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    open_web_sessions: frozenset[str] = frozenset()

    def allows(self, topic: str, channel: str) -> bool:
        """Did the customer agree (or not object, for service topics) to ``topic`` here?"""
        return self.consent.get((topic, channel), TOPIC_DEFAULTS.get(topic, False))


@dataclass(frozen=True)
class Decision:
    """May the message go now? If not: why, and whether it is kept for later (quiet
    hours: until ``not_before``; web chat: until the customer's next visit)."""

    allowed: bool
    reason: str
    not_before: datetime | None = None
    later: bool = False
    channel: str | None = None
    external_id: str | None = None


def can_send(
    contact: Reach,
    topic: str,
    channel: str,
    now: datetime,
    *,
    quiet: QuietHours = NO_QUIET_HOURS,
    external_id: str | None = None,
) -> Decision:
    """Whether a ``topic`` message may go to ``contact`` on ``channel`` at ``now`` (to
    ``external_id`` when given, else to the contact's most recent id on the channel)."""
    if topic not in TOPIC_DEFAULTS:
        return Decision(False, f"unknown topic {topic}", channel=channel)
    if channel not in CHANNELS:
        return Decision(
            False, f"{channel} cannot carry a message outside a conversation", channel=channel
        )
    if not contact.allows(topic, channel):
        return Decision(False, f"no consent for {topic} on {channel}", channel=channel)
    ids = contact.identities.get(channel, ())
    if external_id is not None:
        ids = tuple(i for i in ids if i == external_id)
    if channel == "telegram":
        # A group member's id is "chat:user": only a private chat is theirs alone.
        private = [i for i in ids if ":" not in i]
        if not private:
            return Decision(False, "no telegram chat with this customer", channel=channel)
        ids = tuple(private)
    if not ids:
        return Decision(False, f"no {channel} chat with this customer", channel=channel)
    if channel == "web":
        open_ids = [i for i in ids if i in contact.open_web_sessions]
        if not open_ids:
            return Decision(
                False,
                "no open web chat session (kept for the next visit)",
                later=True,
                channel=channel,
                external_id=ids[0],
            )
        return Decision(True, "web chat session open", channel=channel, external_id=open_ids[0])
    quiet_until = quiet.until(now)
    if quiet_until is not None:
        local_end = quiet_until.astimezone(quiet.zone).strftime("%H:%M")
        return Decision(
            False,
            f"quiet hours until {local_end}",
            not_before=quiet_until,
            later=True,
            channel=channel,
            external_id=ids[0],
        )
    return Decision(True, "allowed", channel=channel, external_id=ids[0])


def best_channel(
    contact: Reach,
    topic: str,
    now: datetime,
    *,
    quiet: QuietHours = NO_QUIET_HOURS,
    channels: Iterable[str] | None = None,
) -> Decision:
    """The one channel a message goes to (a customer hears it once, not on every app):
    the most recently used channel that may carry it now, else the first that may carry
    it later; otherwise a refusal naming every channel's reason."""
    wanted = list(channels) if channels is not None else None
    order = [c for c in contact.identities if wanted is None or c in wanted]
    order += [c for c in (wanted or []) if c not in order]
    decisions = [
        can_send(contact, topic, channel, now, quiet=quiet)
        for channel in order
        if channel in CHANNELS or wanted is not None
    ]
    for accept in (lambda d: d.allowed, lambda d: d.later):
        chosen = next((d for d in decisions if accept(d)), None)
        if chosen is not None:
            return chosen
    if not decisions:
        return Decision(False, "no telegram, slack or web chat with this customer")
    return Decision(False, "; ".join(d.reason for d in decisions))


def load_reach(
    session: Session, contact_ids: set[int], now: datetime, session_timeout: timedelta
) -> dict[int, Reach]:
    """What ``can_send`` decides from, read from the CRM: consent, identities and open
    web chat sessions of these contacts, in three queries however many contacts (a
    campaign reaches all of them). A web chat session is open while its Interaction is
    not closed and was active within ``session_timeout``."""
    if not contact_ids:
        return {}
    ids = sorted(contact_ids)
    identities: dict[int, dict[str, list[str]]] = {i: {} for i in ids}
    last_used = (
        select(
            models.Interaction.sender_id,
            models.Interaction.channel,
            models.Interaction.ended_at,
            models.Interaction.closed,
        )
        .where(models.Interaction.contact_id.in_(ids))
        .order_by(models.Interaction.started_at)
    )
    recent: dict[tuple[str, str], datetime] = {}
    open_web: set[str] = set()
    idle_since = now - session_timeout
    for sender, channel, ended_at, closed in session.execute(last_used):
        if channel and ended_at:
            recent[(channel, sender)] = ended_at
            if channel == "web" and not closed and ended_at >= idle_since:
                open_web.add(sender)
            elif channel == "web":
                open_web.discard(sender)
    rows = session.execute(
        select(
            models.ChannelIdentity.contact_id,
            models.ChannelIdentity.channel,
            models.ChannelIdentity.external_id,
            models.ChannelIdentity.verified_at,
        ).where(
            models.ChannelIdentity.contact_id.in_(ids),
            models.ChannelIdentity.channel.in_(CHANNELS),
        )
    ).all()
    # Most recently used first: the last conversation, else the link's date.
    rows.sort(key=lambda r: recent.get((r[1], r[2]), r[3]), reverse=True)
    for contact_id, channel, external_id, _ in rows:
        identities[contact_id].setdefault(channel, []).append(external_id)
    consent: dict[int, dict[tuple[str, str], bool]] = {i: {} for i in ids}
    decisions = session.execute(
        select(
            models.Consent.contact_id,
            models.Consent.topic,
            models.Consent.channel,
            models.Consent.granted,
        )
        .where(models.Consent.contact_id.in_(ids))
        .order_by(models.Consent.recorded_at, models.Consent.id)
    )
    # Oldest first, so the newest decision wins; a "*" decision sets every channel,
    # a later channel-specific one overrides it (crm_bridge.consent's rule).
    for contact_id, topic, channel, granted in decisions:
        for target in CHANNELS if channel == ALL_CHANNELS else (channel,):
            consent[contact_id][(topic, target)] = bool(granted)
    return {
        i: Reach(
            i,
            consent[i],
            {channel: tuple(ext) for channel, ext in identities[i].items()},
            frozenset(open_web),
        )
        for i in ids
    }
