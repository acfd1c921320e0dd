"""Scheduled wakes: the next local time of day on the configured weekdays (pure).

The rule is shared with the host's ``[idle] wake_schedule``: ``handshake.util.weekly``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from handshake.util import weekly
from pi.config import ScheduleSection, WakeTime


def zone(schedule: ScheduleSection) -> tzinfo:
    """The schedule's time zone: configured, else the Pi's local zone."""
    return weekly.zone(schedule.timezone)


def next_wake(entries: tuple[WakeTime, ...], after: datetime, tz: tzinfo) -> datetime | None:
    """The first scheduled wake strictly after ``after`` (aware), or None without entries."""
    return weekly.next_time(entries, after, tz)
