"""``[planner]`` in host.toml: where the inputs come from, the battery model and the grid limits."""


import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta, field

from handshake.util.configfile import is_url, resolve
from handshake.util.schema import Check, Parse, Section, TimeZone

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


Format = Literal["auto", "awattar", "forecast.solar", "csv"]


def _location(value: object, file: Path) -> str:
    """A URL as it is, a file path resolved against the config file's folder."""
    if not isinstance(value, str) or not value:
        raise TypeError(value)
    return value if is_url(value) else str(resolve(file, value))


Location = Annotated[str, Parse(_location, "a URL or a file path", "URL or path", with_file=True)]


class ShiftableLoad(Section, frozen=True, kw_only=True):
    """A named load on the Pi that runs ``hours`` a day, put into the cheapest slots."""

    name: Annotated[str, Check(lambda v: bool(_LOAD_NAME.match(v)),
                               "a load name configured on the Pi ([[control.loads]])"),
                    Meta(description="as in the Pi's [[control.loads]]")]
    power_w: Annotated[float, Meta(ge=0, le=1e6, description="its draw while on")]
    hours: Annotated[float, Meta(ge=0, le=24, description="hours a day it must run")]


class PlannerConfig(Section, frozen=True, kw_only=True):
    prices_at: Annotated[Location, Meta(description="day-ahead prices: a URL or a file")] = \
        field(name="prices")
    prices_format: Annotated[Format, Meta(description="how to read them")] = "auto"
    pv_forecast_at: Annotated[Location | None, Meta(
        description="PV forecast: a URL or a file")] = field(default=None, name="pv_forecast")
    pv_forecast_format: Annotated[Format, Meta(description="how to read it")] = "auto"
    load_baseline_at: Annotated[Location | None, Meta(
        description="load profile: a URL or a file")] = field(default=None, name="load_baseline")
    load_baseline_format: Annotated[Format, Meta(description="how to read it")] = "auto"
    capacity_wh: Annotated[float, Meta(ge=100, le=1e7, description="usable battery capacity")] = 10_000.0
    soc_min_pct: Annotated[float, Meta(ge=0, le=100, description="plan no lower")] = 10.0
    soc_max_pct: Annotated[float, Meta(ge=0, le=100, description="plan no higher")] = 95.0
    max_charge_w: Annotated[float, Meta(ge=0, le=1e6, description="battery charge power")] = 3000.0
    max_discharge_w: Annotated[float, Meta(ge=0, le=1e6,
                                           description="battery discharge power")] = 3000.0
    round_trip_efficiency: Annotated[float, Meta(ge=0.3, le=1.0,
                                                 description="charge × discharge efficiency")] = 0.9
    load_kwh_per_day: Annotated[float, Meta(
        ge=0, le=10_000, description="flat load when no baseline is given")] = 10.0
    price_add_eur_kwh: Annotated[float, Meta(ge=-10, le=10,
                                             description="added to every price (fees, taxes)")] = 0.0
    price_factor: Annotated[float, Meta(ge=0, le=10, description="prices are multiplied by it")] = 1.0
    export_price_eur_kwh: Annotated[float | None, Meta(
        ge=-10, le=10, description="flat feed-in price (default 0; or export_prices)")] = None
    export_prices_at: Annotated[Location | None, Meta(
        description="feed-in prices per period (EUR/kWh, may be negative): a URL or a file")] = \
        field(default=None, name="export_prices")
    export_prices_format: Annotated[Format, Meta(description="how to read them")] = "auto"
    grid_import_max_w: Annotated[float | None, Meta(ge=0, description="grid import cap")] = None
    export_cap_w: Annotated[float | None, Meta(
        ge=0, le=1e6, description="feed-in cap at all times (0: no feed-in)")] = None
    negative_price_export_cap_w: Annotated[float | None, Meta(
        ge=0, le=1e6, description="feed-in cap while the market price (prices) is below 0")] = None
    initial_soc_pct: Annotated[float, Meta(ge=0, le=100,
                                           description="SoC when the Pi reports none")] = 50.0
    soc_step_pct: Annotated[float, Meta(ge=0.01, le=10, description="DP resolution")] = 0.01
    horizon_h: Annotated[float, Meta(ge=1, le=48, description="plan this far ahead")] = 36.0
    min_horizon_h: Annotated[float, Meta(ge=0.25, le=48,
                                         description="refuse to plan with less known")] = 4.0
    timezone: Annotated[TimeZone | None, Meta(description="for local-time inputs")] = None
    fetch_timeout_s: Annotated[float, Meta(ge=0.1, le=600, description="one input fetch")] = 20.0
    push_deadline_s: Annotated[float, Meta(ge=0.1, le=3600,
                                           description="pushing the plan to the Pi")] = 60.0
    loads: Annotated[tuple[ShiftableLoad, ...], Meta(description="shiftable loads")] = ()

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.soc_min_pct >= self.soc_max_pct:
            yield ("soc_min_pct", f"expected less than soc_max_pct ({self.soc_max_pct:g})")
        if self.export_prices_at is not None and self.export_price_eur_kwh is not None:
            yield ("export_price_eur_kwh", "expected either export_price_eur_kwh (flat) or "
                   "export_prices (per period), got both")
        if self.export_prices_at is None and self.export_prices_format != "auto":
            yield ("export_prices_format", "expected export_prices with it, got none")
        if (self.export_cap_w is not None and self.negative_price_export_cap_w is not None
                and self.negative_price_export_cap_w > self.export_cap_w):
            yield ("negative_price_export_cap_w", f"expected at most export_cap_w "
                   f"({self.export_cap_w:g}, which applies at all times), "
                   f"got {self.negative_price_export_cap_w:g}")

    @classmethod
    def of(cls, *, prices: Source, battery: BatteryModel | None = None,
           **kw: Any) -> "PlannerConfig":
        """Built from parts (tests, benchmarks)."""
        return cls(prices_at=prices.location, prices_format=prices.format,  # type: ignore[arg-type]
                   **dataclasses.asdict(battery or BatteryModel()), **kw)

    @property
    def battery(self) -> BatteryModel:
        return BatteryModel(capacity_wh=self.capacity_wh, soc_min_pct=self.soc_min_pct,
                            soc_max_pct=self.soc_max_pct, max_charge_w=self.max_charge_w,
                            max_discharge_w=self.max_discharge_w,
                            round_trip_efficiency=self.round_trip_efficiency)

    @property
    def prices(self) -> Source:
        return Source(self.prices_at, self.prices_format)

    @property
    def export_prices(self) -> Source | None:
        return (Source(self.export_prices_at, self.export_prices_format)
                if self.export_prices_at else None)

    @property
    def pv_forecast(self) -> Source | None:
        return Source(self.pv_forecast_at, self.pv_forecast_format) if self.pv_forecast_at else None

    @property
    def load_baseline(self) -> Source | None:
        return (Source(self.load_baseline_at, self.load_baseline_format)
                if self.load_baseline_at else None)
