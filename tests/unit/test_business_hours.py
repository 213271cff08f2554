"""Business hours: parsing, open/closed, the next opening, and clear errors."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.business_hours import BusinessHours
from bot.settings import SettingsError

# 2026-11-25 is a Wednesday.
WEDNESDAY_NOON_UTC = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def test_unset_means_always_open() -> None:
    hours = BusinessHours.parse("")
    assert hours.always_open and hours.is_open(WEDNESDAY_NOON_UTC)
    assert hours.next_opening(WEDNESDAY_NOON_UTC) is None


def test_windows_in_their_time_zone() -> None:
    hours = BusinessHours.parse("mon-fri 08:00-20:00; sat 09:00-17:00", "Europe/Berlin")
    assert hours.is_open(WEDNESDAY_NOON_UTC)  # 13:00 in Berlin
    late = datetime(2026, 11, 25, 19, 30, tzinfo=timezone.utc)  # 20:30 in Berlin
    assert not hours.is_open(late)
    opening = hours.next_opening(late)
    assert opening is not None and (opening.weekday(), opening.hour) == (3, 8)
    saturday_night = datetime(2026, 11, 28, 18, 0, tzinfo=timezone.utc)
    monday = hours.next_opening(saturday_night)
    assert monday is not None and (monday.weekday(), monday.hour, monday.day) == (0, 8, 30)


def test_a_range_may_wrap_around_the_week() -> None:
    hours = BusinessHours.parse("sat-mon 10:00-12:00")
    assert sorted(hours.windows) == [0, 5, 6]


@pytest.mark.parametrize(
    ("spec", "zone", "problem"),
    [
        ("weekdays 9-5", "UTC", "cannot read"),
        ("mon 18:00-09:00", "UTC", "closes before it opens"),
        ("mon 25:00-26:00", "UTC", "impossible time"),
        ("mon 09:00-17:00", "Mars/Olympus", "not a time zone"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(spec: str, zone: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        BusinessHours.parse(spec, zone)
