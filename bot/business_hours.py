"""When the support team works: ``BUSINESS_HOURS`` such as ``mon-fri 08:00-20:00; sat 09:00-17:00``
in ``BUSINESS_TIMEZONE`` (an IANA name). Unset means always open.

Outside these hours a customer who asks for a person gets a ticket and the time of the
next opening instead of a queue that nobody watches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_bridge.settings import SettingsError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RULE = re.compile(
    r"^(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+"
    r"(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)


def _clock(text: str, spec: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise SettingsError(f"BUSINESS_HOURS has an impossible time {text!r} in {spec!r}")
    return time(hours, minutes)


@dataclass(frozen=True)
class BusinessHours:
    """Opening windows per weekday (0 = Monday) in one time zone."""

    windows: dict[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    zone: ZoneInfo | timezone = timezone.utc

    @classmethod
    def parse(cls, spec: str, zone_name: str = "UTC") -> BusinessHours:
        """Read ``"mon-fri 08:00-20:00; sat 09:00-17:00"``; '' is always open."""
        try:
            zone = ZoneInfo(zone_name or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise SettingsError(f"BUSINESS_TIMEZONE is not a time zone: {zone_name!r}") from error
        windows: dict[int, list[tuple[time, time]]] = {}
        for part in filter(None, (p.strip().lower() for p in spec.split(";"))):
            match = RULE.match(part)
            if not match or match["first"] not in DAYS or (match["last"] or "mon") not in DAYS:
                raise SettingsError(
                    f"BUSINESS_HOURS: cannot read {part!r} (expected e.g. 'mon-fri 08:00-20:00')"
                )
            first = DAYS.index(match["first"])
            last = DAYS.index(match["last"]) if match["last"] else first
            start, end = _clock(match["start"], part), _clock(match["end"], part)
            if end <= start:
                raise SettingsError(f"BUSINESS_HOURS: {part!r} closes before it opens")
            for day in (
                range(first, last + 1) if first <= last else (*range(first, 7), *range(0, last + 1))
            ):
                windows.setdefault(day, []).append((start, end))
        return cls({day: tuple(sorted(spans)) for day, spans in windows.items()}, zone)

    @property
    def always_open(self) -> bool:
        return not self.windows

    def is_open(self, at: datetime) -> bool:
        """Is the team working at this (timezone-aware) moment?"""
        if self.always_open:
            return True
        local = at.astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        return any(start <= clock < end for start, end in self.windows.get(local.weekday(), ()))

    def next_opening(self, at: datetime) -> datetime | None:
        """The next moment the team starts working after ``at`` (None if always open)."""
        if self.always_open:
            return None
        local = at.astimezone(self.zone)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            for start, _ in self.windows.get(day.weekday(), ()):
                opening = datetime.combine(day, start, tzinfo=self.zone)
                if opening > local:
                    return opening
        return None
