"""``[planner]`` in host.toml: where the inputs come from, the battery model and the grid limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from handshake.configfile import Section, is_url, resolve

FORMATS = ("auto", "awattar", "forecast.solar", "csv")
_LOAD_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Source:
    """A file or an http(s) URL, and how to read it."""

    location: str  # a URL, or an absolute path
    format: str = "auto"

    @property
    def is_url(self) -> bool:
        return is_url(self.location)


@dataclass(frozen=True, slots=True)
class BatteryModel:
    capacity_wh: float = 10_000.0
    soc_min_pct: float = 10.0
    soc_max_pct: float = 95.0
    max_charge_w: float = 3000.0
    max_discharge_w: float = 3000.0
    round_trip_efficiency: float = 0.9


@dataclass(frozen=True, slots=True)
class ShiftableLoad:
    """A named load on the Pi that runs ``hours`` a day, put into the cheapest slots."""

    name: str
    power_w: float
    hours: float


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    prices: Source
    battery: BatteryModel
    pv_forecast: Source | None = None
    load_baseline: Source | None = None
    load_kwh_per_day: float = 10.0
    price_add_eur_kwh: float = 0.0
    price_factor: float = 1.0
    export_price_eur_kwh: float = 0.0
    grid_import_max_w: float | None = None
    initial_soc_pct: float = 50.0
    soc_step_pct: float = 0.01
    horizon_h: float = 36.0
    min_horizon_h: float = 4.0
    timezone: str | None = None
    fetch_timeout_s: float = 20.0
    push_deadline_s: float = 60.0
    loads: tuple[ShiftableLoad, ...] = ()


def parse(section: Section, file: Path) -> PlannerConfig:
    """Read ``[planner]``; problems go to the section's collector."""
    s = section
    b = BatteryModel(
        capacity_wh=s.number("capacity_wh", 10_000.0, lo=100, hi=1e7),
        soc_min_pct=s.number("soc_min_pct", 10.0, lo=0, hi=100),
        soc_max_pct=s.number("soc_max_pct", 95.0, lo=0, hi=100),
        max_charge_w=s.number("max_charge_w", 3000.0, lo=0, hi=1e6),
        max_discharge_w=s.number("max_discharge_w", 3000.0, lo=0, hi=1e6),
        round_trip_efficiency=s.number("round_trip_efficiency", 0.9, lo=0.3, hi=1.0),
    )
    if isinstance(b.soc_min_pct, float) and isinstance(b.soc_max_pct, float) \
            and b.soc_min_pct >= b.soc_max_pct:
        s.problems.add(s.key("soc_min_pct"), f"expected less than soc_max_pct ({b.soc_max_pct:g})")
    config = PlannerConfig(
        prices=_source(s, "prices", file, required=True),  # type: ignore[arg-type]
        battery=b,
        pv_forecast=_source(s, "pv_forecast", file),
        load_baseline=_source(s, "load_baseline", file),
        load_kwh_per_day=s.number("load_kwh_per_day", 10.0, lo=0, hi=10_000),
        price_add_eur_kwh=s.number("price_add_eur_kwh", 0.0, lo=-10, hi=10),
        price_factor=s.number("price_factor", 1.0, lo=0, hi=10),
        export_price_eur_kwh=s.number("export_price_eur_kwh", 0.0, lo=-10, hi=10),
        grid_import_max_w=s.number("grid_import_max_w", None, lo=0),
        initial_soc_pct=s.number("initial_soc_pct", 50.0, lo=0, hi=100),
        soc_step_pct=s.number("soc_step_pct", 0.01, lo=0.01, hi=10),
        horizon_h=s.number("horizon_h", 36.0, lo=1, hi=48),
        min_horizon_h=s.number("min_horizon_h", 4.0, lo=0.25, hi=48),
        timezone=_timezone(s),
        fetch_timeout_s=s.number("fetch_timeout_s", 20.0, lo=0.1, hi=600),
        push_deadline_s=s.number("push_deadline_s", 60.0, lo=0.1, hi=3600),
        loads=tuple(_loads(s)),
    )
    s.done()
    return config


def _source(s: Section, key: str, file: Path, required: bool = False) -> Source | None:
    value = s.text(key) if required else s.text(key, None)
    fmt = s.text(f"{key}_format", "auto", choices=FORMATS)
    if not isinstance(value, str):
        return None
    location = value if is_url(value) else str(resolve(file, value))
    return Source(location, fmt if isinstance(fmt, str) else "auto")


def _timezone(s: Section) -> str | None:
    tz: str | None = s.text("timezone", None)
    if isinstance(tz, str):
        try:
            from zoneinfo import ZoneInfo  # noqa: PLC0415

            ZoneInfo(tz)
        except Exception:
            s.problems.add(s.key("timezone"), f"expected an IANA time zone like \"Europe/Berlin\", "
                           f"got {tz!r}")
    return tz


def _loads(s: Section) -> list[ShiftableLoad]:
    out = []
    for entry in s.table_list("loads"):
        load = ShiftableLoad(
            name=entry.check("name", entry.text("name"), lambda v: bool(_LOAD_NAME.match(v)),
                             "a load name configured on the Pi ([[control.loads]])"),
            power_w=entry.number("power_w", lo=0, hi=1e6),
            hours=entry.number("hours", lo=0, hi=24),
        )
        entry.done()
        out.append(load)
    return out
