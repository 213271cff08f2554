"""Quiet hours: a daily period (e.g. 21:00-08:00 in a time zone) without proactive
messages. Parsed from the QUIET_HOURS settings, used by ``crm_bridge.proactive``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_bridge.errors import SettingsError

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """A daily period (e.g. 21:00-08:00, across midnight) without proactive messages."""

    start: time | None = None
    end: time | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> QuietHours:
        """``"21:00-08:00"`` in ``timezone``; an empty spec means no quiet hours."""
        try:
            zone = ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise SettingsError(
                f"QUIET_HOURS_TIMEZONE must be a time zone such as Europe/Berlin, "
                f"got {timezone!r}"
            ) from error
        spec = spec.strip()
        if not spec:
            return cls(zone=zone)
        parts = [part.strip() for part in spec.split("-")]
        clocks = [_CLOCK.match(part) for part in parts]
        if len(parts) != 2 or not all(clocks):
            raise SettingsError(f"QUIET_HOURS must look like 21:00-08:00, got {spec!r}")
        start, end = (time(int(m.group(1)), int(m.group(2))) for m in clocks if m)
        if start == end:
            raise SettingsError("QUIET_HOURS must start and end at different times")
        return cls(start, end, zone)

    def until(self, now: datetime) -> datetime | None:
        """The end of the quiet period ``now`` falls in (UTC-aware), or None outside it."""
        if self.start is None or self.end is None:
            return None
        local = now.astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        today = local.date()
        if self.start < self.end:
            quiet, ends_on = self.start <= clock < self.end, today
        elif clock >= self.start:  # the evening part of a period across midnight
            quiet, ends_on = True, today + timedelta(days=1)
        else:
            quiet, ends_on = clock < self.end, today
        return self._at(ends_on, self.end).astimezone(now.tzinfo) if quiet else None

    def _at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock).replace(tzinfo=self.zone)


NO_QUIET_HOURS = QuietHours()
