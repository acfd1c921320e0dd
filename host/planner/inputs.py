"""The planner's inputs: prices, PV forecast and load, from files or URLs, onto 15-minute slots.

Formats: aWATTar market data JSON (``{"data": [{"start_timestamp": ms, "end_timestamp": ms,
"marketprice": EUR/MWh}]}``), forecast.solar JSON (``{"result": {"watts": {"YYYY-MM-DD
HH:MM:SS": W}}}`` in local time) and CSV with a header: ``start`` (ISO 8601 with zone) plus
``price_eur_kwh`` / ``eur_mwh`` / ``w``; a load CSV may give ``time`` as HH:MM instead (a daily
profile). Every problem is an InputError that names the input and what is wrong.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from handshake.errors import FatalError
from handshake.util.timeutil import iso, parse_iso
from host.planner.config import Source

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
# A typical household's hourly shape (fractions of a day's energy; morning and evening peaks).
DEFAULT_SHAPE = (0.025, 0.02, 0.02, 0.02, 0.02, 0.025, 0.04, 0.055, 0.05, 0.04, 0.04, 0.045,
                 0.05, 0.045, 0.04, 0.04, 0.045, 0.055, 0.07, 0.075, 0.065, 0.05, 0.04, 0.03)


class InputError(FatalError):
    """An input is missing, malformed or does not cover the horizon."""


@dataclass(frozen=True, slots=True)
class Series:
    """Piecewise-constant values over sorted [start, end) periods."""

    name: str
    periods: tuple[tuple[datetime, datetime, float], ...]

    def covered_until(self, start: datetime) -> datetime:
        """How far the series covers time contiguously from ``start`` (``start`` if not at all)."""
        end = start
        for a, b, _ in self.periods:
            if a <= end < b:
                end = b
        return end

    def slots(self, start: datetime, count: int, slot_s: int) -> list[float]:
        """Time-weighted mean per slot; InputError where the series has a gap."""
        out = []
        j = 0
        for i in range(count):
            a = start + timedelta(seconds=i * slot_s)
            b = a + timedelta(seconds=slot_s)
            total = covered = 0.0
            while j < len(self.periods) and self.periods[j][1] <= a:
                j += 1
            k = j
            while k < len(self.periods) and self.periods[k][0] < b:
                pa, pb, value = self.periods[k]
                overlap = (min(b, pb) - max(a, pa)).total_seconds()
                if overlap > 0:
                    total += value * overlap
                    covered += overlap
                k += 1
            if covered < slot_s - 1e-6:
                raise InputError(f"{self.name}: no value for {iso(a)}–{iso(b)}")
            out.append(total / slot_s)
        return out


@dataclass(frozen=True, slots=True)
class DailyProfile:
    """A load shape that repeats every local day: (minute of day, W) steps."""

    name: str
    steps: tuple[tuple[int, float], ...]
    tz: tzinfo

    def slots(self, start: datetime, count: int, slot_s: int) -> list[float]:
        out = []
        for i in range(count):
            mid = (start + timedelta(seconds=(i + 0.5) * slot_s)).astimezone(self.tz)
            minute = mid.hour * 60 + mid.minute
            value = self.steps[-1][1]
            for at, w in self.steps:
                if at <= minute:
                    value = w
            out.append(value)
        return out

    def covered_until(self, start: datetime) -> datetime:
        return start + timedelta(days=3650)


def default_load(kwh_per_day: float, tz: tzinfo) -> DailyProfile:
    """The built-in household shape scaled to ``kwh_per_day``."""
    total = sum(DEFAULT_SHAPE)
    steps = tuple((h * 60, kwh_per_day * 1000 * f / total) for h, f in enumerate(DEFAULT_SHAPE))
    return DailyProfile("default load profile", steps, tz)


async def fetch(source: Source, timeout_s: float) -> bytes:
    """The bytes of a file or URL; InputError when it cannot be had."""
    if not source.is_url:
        try:
            return await asyncio.to_thread(Path(source.location).read_bytes)
        except OSError as exc:
            raise InputError(f"{source.location}: cannot read: {exc.strerror or exc}") from None
    try:
        async with aiohttp.ClientSession() as session, session.get(
                source.location, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                raise InputError(f"{source.location}: HTTP {resp.status} {resp.reason}")
            return await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise InputError(f"{source.location}: {type(exc).__name__}: {exc}") from None


def parse_prices(data: bytes, name: str, fmt: str = "auto") -> Series:
    """Market prices in EUR/kWh."""
    fmt = _format(data, name, fmt)
    if fmt == "awattar":
        doc = _json(data, name)
        rows = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(rows, list):
            raise InputError(f"{name}: expected aWATTar JSON with a \"data\" list")
        periods = []
        for i, row in enumerate(rows):
            try:
                a = datetime.fromtimestamp(row["start_timestamp"] / 1000, UTC)
                b = datetime.fromtimestamp(row["end_timestamp"] / 1000, UTC)
                price = float(row["marketprice"]) / 1000  # EUR/MWh → EUR/kWh
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{name}: data[{i}]: expected start_timestamp, end_timestamp "
                                 f"and marketprice ({exc})") from None
            if str(row.get("unit", "Eur/MWh")).lower() not in ("eur/mwh", "eur / mwh"):
                raise InputError(f"{name}: data[{i}]: unit {row.get('unit')!r}, expected Eur/MWh")
            periods.append((a, b, _finite(price, name, f"data[{i}].marketprice")))
        return _series(name, periods)
    if fmt != "csv":
        raise InputError(f"{name}: prices must be aWATTar JSON or CSV, not {fmt}")
    rows = _csv(data, name)
    unit = _column(rows, name, ("price_eur_kwh", "eur_kwh", "price", "eur_mwh"))
    scale = 1 / 1000 if unit == "eur_mwh" else 1.0
    return _series(name, _csv_periods(rows, name, unit, scale))


def parse_pv(data: bytes, name: str, fmt: str, tz: tzinfo) -> Series:
    """PV power in W."""
    fmt = _format(data, name, fmt)
    if fmt == "forecast.solar":
        doc = _json(data, name)
        watts = doc.get("result", {}).get("watts") if isinstance(doc, dict) else None
        if not isinstance(watts, dict) or not watts:
            raise InputError(f"{name}: expected forecast.solar JSON with result.watts")
        zone = _zone(doc, tz)
        points = []
        for stamp, w in watts.items():
            try:
                at = datetime.fromisoformat(stamp).replace(tzinfo=zone)
            except ValueError:
                raise InputError(f"{name}: result.watts: bad time {stamp!r}") from None
            points.append((at, _finite(w, name, f"result.watts[{stamp}]")))
        return _series(name, _from_points(sorted(points), zone))
    if fmt != "csv":
        raise InputError(f"{name}: a PV forecast must be forecast.solar JSON or CSV, not {fmt}")
    rows = _csv(data, name)
    return _series(name, _csv_periods(rows, name, _column(rows, name, ("w", "pv_w", "watts")), 1.0))


def parse_load(data: bytes, name: str, tz: tzinfo) -> Series | DailyProfile:
    """A load baseline CSV: ``time,w`` (HH:MM, a daily profile) or ``start,w`` (ISO)."""
    rows = _csv(data, name)
    col = _column(rows, name, ("w", "load_w", "watts"))
    key = "time" if "time" in rows[0] else "start"
    first = rows[0].get(key, "")
    if _HHMM.match(first.strip()):
        steps = []
        for i, row in enumerate(rows, start=2):
            m = _HHMM.match(row.get(key, "").strip())
            if m is None:
                raise InputError(f"{name}: line {i}: expected HH:MM in column {key!r}")
            steps.append((int(m[1]) * 60 + int(m[2]), _float(row[col], name, i)))
        return DailyProfile(name, tuple(sorted(steps)), tz)
    return _series(name, _csv_periods(rows, name, col, 1.0))


# -- helpers ---------------------------------------------------------------------------

def _format(data: bytes, name: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if name.lower().split("?")[0].endswith(".csv"):
        return "csv"
    text = data.lstrip()[:1]
    if text not in (b"{", b"["):
        return "csv"
    doc = _json(data, name)
    if isinstance(doc, dict) and "data" in doc:
        return "awattar"
    if isinstance(doc, dict) and "result" in doc:
        return "forecast.solar"
    raise InputError(f"{name}: JSON that is neither aWATTar (\"data\") nor forecast.solar "
                     "(\"result\")")


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name}: not valid JSON: {exc}") from None


def _csv(data: bytes, name: str) -> list[dict[str, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise InputError(f"{name}: no data rows (expected a header line and at least one row)")
    return rows


def _column(rows: Sequence[dict[str, str]], name: str, options: Sequence[str]) -> str:
    for option in options:
        if option in rows[0]:
            return option
    raise InputError(f"{name}: expected a column named {' or '.join(options)}; "
                     f"found {', '.join(rows[0])}")


def _float(text: str, name: str, line: int) -> float:
    try:
        return _finite(float(text), name, f"line {line}")
    except ValueError:
        raise InputError(f"{name}: line {line}: expected a number, got {text!r}") from None


def _finite(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name}: {where}: expected a number, got {value!r}")
    return float(value)


def _csv_periods(rows: Sequence[dict[str, str]], name: str, col: str,
                 scale: float) -> list[tuple[datetime, datetime, float]]:
    key = "start" if "start" in rows[0] else "time" if "time" in rows[0] else None
    if key is None:
        raise InputError(f"{name}: expected a column named start (ISO 8601 time with zone)")
    starts: list[datetime] = []
    values: list[float] = []
    for i, row in enumerate(rows, start=2):
        try:
            starts.append(parse_iso(row.get(key, "")))
        except ValueError as exc:
            raise InputError(f"{name}: line {i}: {key}: {exc}") from None
        values.append(_float(row.get(col, ""), name, i) * scale)
    ends = [parse_iso(r["end"]) if r.get("end") else None for r in rows]
    periods = []
    for i, (a, v) in enumerate(zip(starts, values, strict=True)):
        b = ends[i] or (starts[i + 1] if i + 1 < len(starts) else
                        a + (a - starts[i - 1] if i else timedelta(hours=1)))
        periods.append((a, b, v))
    return periods


def _series(name: str, periods: list[tuple[datetime, datetime, float]]) -> Series:
    if not periods:
        raise InputError(f"{name}: no values")
    periods.sort(key=lambda p: p[0])
    for a, b, _ in periods:
        if b <= a:
            raise InputError(f"{name}: period {iso(a)}–{iso(b)} ends before it starts")
    return Series(name, tuple(periods))


def _zone(doc: dict[str, Any], tz: tzinfo) -> tzinfo:
    name = doc.get("message", {}).get("info", {}).get("timezone") \
        if isinstance(doc.get("message"), dict) else None
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except Exception:
            return tz
    return tz


def _from_points(points: list[tuple[datetime, float]],
                 zone: tzinfo) -> list[tuple[datetime, datetime, float]]:
    """forecast.solar samples → periods (trapezoids); nights and the rest of each day are 0 W."""
    periods: list[tuple[datetime, datetime, float]] = []
    day: Callable[[datetime], datetime] = lambda t: t.replace(hour=0, minute=0, second=0)  # noqa: E731
    first = day(points[0][0])
    cursor = first
    for (a, wa), (b, wb) in pairwise(points):
        if cursor < a:
            periods.append((cursor, a, 0.0))
        if day(a) == day(b):
            periods.append((a, b, (wa + wb) / 2))
            cursor = b
        else:
            cursor = a
    last = points[-1][0]
    if cursor < last:
        periods.append((cursor, last, 0.0))
    periods.append((last, day(last) + timedelta(days=1), 0.0))
    return [(a.astimezone(UTC), b.astimezone(UTC), w) for a, b, w in periods if b > a]
