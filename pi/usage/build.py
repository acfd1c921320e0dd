"""usage.json from the ledger and the host plug's energy: pure, no files, no clock.

Days are local dates in the Pi's zone (``[schedule] timezone``, else the Pi's own, the
same calendar the power history keeps its daily energy in); a DST day has 23 or 25 hours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime

from handshake.documents import (
    DemandClient,
    UsageBand,
    UsageDay,
    UsageDocument,
    UsageTotals,
    UsageWake,
)
from handshake.messages import WAKE_REASONS
from handshake.util.timeutil import iso
from pi.usage.ledger import Interval, Wake

DAYS = 30
RECENT_WAKES = 50
DEMAND_CLIENTS = 10
ONLINE = "online"


@dataclass(frozen=True, slots=True)
class HostEnergy:
    """What the power history says of the host plug."""

    plug: str
    daily_kwh: dict[str, float]  # local date (YYYY-MM-DD) → kWh; a day without data is absent
    online_draw_w: float | None  # the average draw while the host was online; None: never seen


def build(intervals: Sequence[Interval], wakes: Sequence[Wake], now: float, tz: tzinfo | None, *,
          energy: HostEnergy | None = None, price_per_kwh: float | None = None,
          currency: str = "EUR", timezone: str | None = None,
          interval_s: float | None = None) -> UsageDocument:
    """The usage document at ``now``: 30 days (today partial), this month, today's timeline.

    kWh saved against an always-on host, per day::

        saved_kwh = online_draw_w × day_hours / 1000 − host_kwh

    ``online_draw_w`` is the host plug's measured average draw while the host was online
    (over the ledger's online minutes, see ``online_minutes``), so the first term is what
    the host would have drawn had it stayed up all day; ``host_kwh`` is what its plug
    measured that day (asleep, waking and online together). ``day_hours`` is 24 (23 or 25
    on a DST day), and for today the hours so far. Negative when the host drew more than
    its online average (a day spent busy), shown as it is. Null without plug data for the
    day or without an online average. ``saved_money = saved_kwh × price_per_kwh``.
    """
    today = _day(now, tz)
    first_shown = today - timedelta(days=DAYS - 1)
    first = min(first_shown, today.replace(day=1))
    wakes_by_day: dict[date, Counter[str]] = {}
    for wake in wakes:
        wakes_by_day.setdefault(_day(wake.at_ms / 1000, tz), Counter())[wake.reason] += 1
    days: list[UsageDay] = []
    day = first
    while day <= today:
        days.append(_usage_day(day, intervals, wakes_by_day.get(day, Counter()), now, tz,
                               energy, price_per_kwh))
        day += timedelta(days=1)
    month = _totals(today, [d for d in days if d.date.startswith(today.strftime("%Y-%m"))])
    recent = sorted(wakes, key=lambda w: w.at_ms, reverse=True)[:RECENT_WAKES]
    return UsageDocument(
        generated_at=iso(now) or "", interval_s=interval_s, timezone=timezone,
        host_plug=None if energy is None else energy.plug,
        online_draw_w=None if energy is None or energy.online_draw_w is None
        else round(energy.online_draw_w, 1),
        price_per_kwh=price_per_kwh, currency=currency,
        recorded_since=iso(intervals[0].start_ms / 1000) if intervals else None,
        days=[d for d in days if d.date >= first_shown.isoformat()],
        month=month,
        today_start=iso(_start(today, tz)),
        today_end=iso(_start(today + timedelta(days=1), tz)),
        today=_timeline(intervals, _start(today, tz), now),
        recent_wakes=[UsageWake(at=iso(w.at_ms / 1000) or "", reason=w.reason, client=w.client)
                      for w in recent],
        demand_clients=_demand_clients(wakes))


def online_minutes(intervals: Sequence[Interval], now: float) -> list[tuple[int, int]]:
    """The whole minutes (``[first, end)`` minute numbers) the host spent online."""
    out = []
    for interval in intervals:
        if interval.state != ONLINE:
            continue
        end_ms = interval.end_ms if interval.end_ms is not None else round(now * 1000)
        first, end = -(-interval.start_ms // 60_000), end_ms // 60_000
        if end > first:
            out.append((first, end))
    return out


# -- helpers -------------------------------------------------------------------------------


def _day(ts: float, tz: tzinfo | None) -> date:
    return datetime.fromtimestamp(ts, tz).date()


def _start(day: date, tz: tzinfo | None) -> float:
    """The first instant of the local ``day`` (DST-aware; None: the Pi's own zone)."""
    return datetime.combine(day, dtime(), tzinfo=tz).timestamp()


def _usage_day(day: date, intervals: Sequence[Interval], wakes: Counter[str], now: float,
               tz: tzinfo | None, energy: HostEnergy | None,
               price: float | None) -> UsageDay:
    start = _start(day, tz)
    end = min(_start(day + timedelta(days=1), tz), now)
    recorded = online = 0.0
    for interval in intervals:
        lo = max(start, interval.start_ms / 1000)
        hi = min(end, now if interval.end_ms is None else interval.end_ms / 1000)
        if hi > lo:
            recorded += hi - lo
            if interval.state == ONLINE:
                online += hi - lo
    host_kwh = saved = money = None
    if energy is not None:
        host_kwh = energy.daily_kwh.get(day.isoformat())
        if host_kwh is not None and energy.online_draw_w is not None:
            saved = energy.online_draw_w * (end - start) / 3600 / 1000 - host_kwh
            money = None if price is None else round(saved * price, 2)
            saved = round(saved, 3)
        host_kwh = None if host_kwh is None else round(host_kwh, 3)
    return UsageDay(date=day.isoformat(), partial=end < _start(day + timedelta(days=1), tz),
                    hours_recorded=round(recorded / 3600, 3),
                    hours_online=round(online / 3600, 3),
                    wakes={reason: wakes[reason] for reason in WAKE_REASONS},
                    host_kwh=host_kwh, saved_kwh=saved, saved_money=money)


def _sum(values: list[float | None], digits: int) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), digits) if known else None


def _totals(today: date, days: list[UsageDay]) -> UsageTotals:
    return UsageTotals(
        month=today.strftime("%Y-%m"),
        hours_online=round(sum(d.hours_online for d in days), 3),
        wakes={reason: sum(d.wakes.get(reason, 0) for d in days) for reason in WAKE_REASONS},
        host_kwh=_sum([d.host_kwh for d in days], 3),
        saved_kwh=_sum([d.saved_kwh for d in days], 3),
        saved_money=_sum([d.saved_money for d in days], 2))


def _timeline(intervals: Sequence[Interval], start: float, now: float) -> list[UsageBand]:
    bands = []
    for interval in intervals:
        lo = max(start, interval.start_ms / 1000)
        hi = min(now, now if interval.end_ms is None else interval.end_ms / 1000)
        if hi > lo:
            bands.append(UsageBand(start=iso(lo) or "", end=iso(hi) or "", state=interval.state))
    return bands


def _demand_clients(wakes: Sequence[Wake]) -> list[DemandClient]:
    counts: Counter[str] = Counter()
    last: dict[str, int] = {}
    for wake in wakes:
        if wake.reason.startswith("demand:") and wake.client:
            counts[wake.client] += 1
            last[wake.client] = max(last.get(wake.client, 0), wake.at_ms)
    ranked = sorted(counts, key=lambda c: (-counts[c], -last[c], c))[:DEMAND_CLIENTS]
    return [DemandClient(client=c, wakes=counts[c], last=iso(last[c] / 1000) or "")
            for c in ranked]
