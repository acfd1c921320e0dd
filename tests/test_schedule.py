"""Scheduled wakes: next local time on the configured days, across DST."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pi.config import WakeTime
from pi.schedule import next_wake

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = WakeTime(at="07:00", days=(0, 1, 2, 3, 4))
WEEKEND = WakeTime(at="09:30", days=(5, 6))


def test_next_weekday_morning() -> None:
    # Friday 2026-11-20 08:00 Berlin → Saturday 09:30 (weekend entry wins over Monday 07:00)
    after = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    assert next_wake((WEEKDAYS, WEEKEND), after, BERLIN) == datetime(2026, 11, 21, 9, 30,
                                                                      tzinfo=BERLIN)


def test_same_day_later_and_strictly_after() -> None:
    after = datetime(2026, 11, 23, 5, 59, tzinfo=UTC)  # Monday 06:59 Berlin
    assert next_wake((WEEKDAYS,), after, BERLIN) == datetime(2026, 11, 23, 7, 0, tzinfo=BERLIN)
    exactly = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # Monday 07:00 Berlin
    assert next_wake((WEEKDAYS,), exactly, BERLIN) == datetime(2026, 11, 24, 7, 0, tzinfo=BERLIN)


def test_across_dst_the_local_time_is_kept() -> None:
    # 2026-03-29 Berlin switches to summer time: 07:00 local is 05:00 UTC after, 06:00 before.
    before = next_wake((WakeTime(at="07:00"),), datetime(2026, 3, 28, 7, 0, tzinfo=UTC), BERLIN)
    assert before is not None
    assert before.astimezone(UTC) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def test_no_entries_no_wake() -> None:
    assert next_wake((), datetime(2026, 1, 1, tzinfo=UTC), BERLIN) is None
