"""power.json: live watts, today/month kWh, the last 24 h by minute and 30 days by day (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from handshake.documents import PowerDocument, PowerPlug, schema_of
from handshake.util.timeutil import iso
from pi.power.health import PlugStatus
from pi.power.history import MWMS_PER_WH, Calendar, DayRow, Sample

SCHEMA = schema_of(PowerDocument)
SERIES_MINUTES = 1440
DAILY_DAYS = 30


@dataclass(frozen=True, slots=True)
class Window:
    """Which minutes and days power.json needs at ``now``."""

    first_minute: int
    last_minute: int
    first_day: str
    today: str
    days: tuple[str, ...]  # the DAILY_DAYS dates shown, oldest first

    @classmethod
    def at(cls, now: float, calendar: Calendar) -> Window:
        last = int(now // 60)
        today = calendar.day(now)
        days = tuple((today - timedelta(days=i)).isoformat() for i in range(DAILY_DAYS - 1, -1, -1))
        first_day = min(days[0], today.replace(day=1).isoformat())  # the month may start earlier
        return cls(last - SERIES_MINUTES + 1, last, first_day, today.isoformat(), days)


def document(now: float, interval_s: float, calendar: Calendar, plugs: Sequence[PlugStatus],
             minutes: dict[str, list[tuple[int, int, int]]], days: Sequence[DayRow],
             pending: Sequence[Sample]) -> PowerDocument:
    """The whole power.json: committed rows merged with the samples still pending.

    ``minutes`` holds ``(minute, e, dt)`` rows per plug (``History.minute_energy``).
    """
    window = Window.at(now, calendar)
    return PowerDocument(
        generated_at=iso(now) or "", interval_s=interval_s,
        plugs=[plug_document(p, now, window, calendar, minutes.get(p.config.name, []),
                             [d for d in days if d.plug == p.config.name],
                             [s for s in pending if s.plug == p.config.name])
               for p in plugs])


def plug_document(status: PlugStatus, now: float, window: Window, calendar: Calendar,
                  minutes: Sequence[tuple[int, int, int]], days: Sequence[DayRow],
                  pending: Sequence[Sample]) -> PowerPlug:
    day_e, counter = _day_energy(days, pending, calendar)
    today_kwh, month_kwh, source = _totals(status, window, calendar, day_e)
    reading = status.reading
    return PowerPlug(
        name=status.config.name,
        role=status.config.role,
        health=status.health(now),
        last_seen=iso(reading.at) if reading is not None else None,
        live_w=status.live_w(now),
        today_kwh=today_kwh,
        month_kwh=month_kwh,
        energy_source=source,
        series_24h={"start": iso(window.first_minute * 60), "step_s": 60,
                    "w": _series(window, minutes, pending)},
        daily_kwh=[{"date": d, "kwh": _day_kwh(d, day_e, counter)} for d in window.days],
        error=status.error,
        interval_s=status.config.interval_s,
    )


def _series(window: Window, minutes: Sequence[tuple[int, int, int]],
            pending: Sequence[Sample]) -> list[float | None]:
    """Mean watts per minute of the window (None: no sample covers it)."""
    first, count = window.first_minute, window.last_minute - window.first_minute + 1
    energy, covered = [0] * count, [0] * count  # per minute of the window: mW·ms and ms
    for minute, e, dt in minutes:
        if 0 <= minute - first < count:
            energy[minute - first] += e
            covered[minute - first] += dt
    for s in pending:
        index = s.ts // 60_000 - first
        if 0 <= index < count:
            energy[index] += s.w * s.dt
            covered[index] += s.dt
    return [round(e / dt / 1000, 3) if dt else None for e, dt in zip(energy, covered, strict=True)]


def _day_energy(days: Sequence[DayRow], pending: Sequence[Sample], calendar: Calendar
                ) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Integrated mW·ms per day, and the plug's own day counter: day → (Wh, ts)."""
    day_e: dict[str, int] = defaultdict(int)
    counter: dict[str, tuple[int, int]] = {}  # committed rows rank first
    for d in days:
        day_e[d.day] += d.e
        if d.plug_wh is not None:
            counter[d.day] = (d.plug_wh, -1)
    for s in pending:
        day = calendar.day_ms(s.ts).isoformat()
        day_e[day] += s.w * s.dt
        if s.today_wh is not None and s.ts >= counter.get(day, (0, -1))[1]:
            counter[day] = (s.today_wh, s.ts)
    return day_e, counter


def _day_kwh(day: str, day_e: dict[str, int], counter: dict[str, tuple[int, int]]) -> float | None:
    if day in counter:
        return _kwh(counter[day][0] * MWMS_PER_WH)
    return _kwh(day_e[day]) if day in day_e else None


def _totals(status: PlugStatus, window: Window, calendar: Calendar,
            day_e: dict[str, int]) -> tuple[float | None, float | None, str]:
    """Today's and this month's kWh and their source: the plug's own counters when current."""
    reading = status.reading
    if (reading is not None and reading.today_wh is not None and reading.month_wh is not None
            and calendar.day(reading.at).isoformat() == window.today):
        return (_kwh(reading.today_wh * MWMS_PER_WH), _kwh(reading.month_wh * MWMS_PER_WH),
                "plug")
    month_days = [d for d in day_e if d.startswith(window.today[:7])]
    today_kwh = _kwh(day_e[window.today]) if window.today in day_e else None
    month_kwh = _kwh(sum(day_e[d] for d in month_days)) if month_days else None
    return today_kwh, month_kwh, "integrated"


def _kwh(e: int) -> float:
    """mW·ms → kWh, to the mWh."""
    return round(e / (MWMS_PER_WH * 1000), 6)
