"""Scheduled wakes: the next local time of day on the configured weekdays (pure)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from pi.config import ScheduleSection, WakeTime

# A week is the longest gap between two occurrences of any entry.
_SEARCH_DAYS = 8


def zone(schedule: ScheduleSection) -> tzinfo:
    """The schedule's time zone: configured, else the Pi's local zone."""
    if schedule.timezone:
        return ZoneInfo(schedule.timezone)
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def next_wake(entries: tuple[WakeTime, ...], after: datetime, tz: tzinfo) -> datetime | None:
    """The first scheduled wake strictly after ``after`` (aware), or None without entries."""
    local = after.astimezone(tz)
    best: datetime | None = None
    for entry in entries:
        hh, mm = (int(x) for x in entry.at.split(":"))
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in entry.days:
                continue
            # fold=0 picks the first of a repeated hour; a skipped hour is normalised forward.
            candidate = datetime.combine(day, time(hh, mm), tzinfo=tz)
            candidate = candidate.astimezone(tz)
            if candidate > local:
                if best is None or candidate < best:
                    best = candidate
                break
    return best
