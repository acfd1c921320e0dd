"""Weekly times of day ("07:00 on mon-fri"): the config entry, its day parser, the next one."""

import re
from datetime import datetime, time, timedelta, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo

from msgspec import Meta

from handshake.util.schema import Check, Parse, Section

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A week is the longest gap between two occurrences of any entry.
_SEARCH_DAYS = 8


def parse_days(text: object) -> tuple[int, ...]:
    """``"mon-fri"``, ``"sat,sun"``, ``"daily"`` → weekday numbers (0 = Monday)."""
    if not isinstance(text, str):
        raise TypeError(text)
    text = text.strip().lower()
    if text in ("daily", "*", "mon-sun"):
        return tuple(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if first not in DAY_NAMES or (sep and last not in DAY_NAMES):
            raise ValueError(text)
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if sep else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return tuple(sorted(days))


class WakeTime(Section, frozen=True, kw_only=True):
    """One scheduled wake: a local time of day on some weekdays (0 = Monday)."""

    at: Annotated[str, Check(lambda v: bool(_TIME_RE.match(v)), "a local time HH:MM (24 h)"),
                  Meta(description="local time of day")]
    days: Annotated[tuple[int, ...], Parse(parse_days, "days like \"mon-fri\" or \"sat,sun\"",
                                           "days", show=lambda _: '"daily"'),
                    Meta(description="mon-fri, sat,sun, daily …")] = tuple(range(7))


def zone(name: str | None) -> tzinfo:
    """The named time zone, else this machine's local one."""
    if name:
        return ZoneInfo(name)
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def next_time(entries: tuple[WakeTime, ...], after: datetime, tz: tzinfo) -> datetime | None:
    """The first entry's time strictly after ``after`` (aware), or None without entries."""
    local = after.astimezone(tz)
    best: datetime | None = None
    for entry in entries:
        hh, mm = (int(x) for x in entry.at.split(":"))
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in entry.days:
                continue
            # fold=0 picks the first of a repeated hour; a skipped hour is normalised forward.
            candidate = datetime.combine(day, time(hh, mm), tzinfo=tz).astimezone(tz)
            if candidate > local:
                if best is None or candidate < best:
                    best = candidate
                break
    return best
