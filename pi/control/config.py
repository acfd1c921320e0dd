"""``[control]`` in pi.toml: the device, its profile, timing, and the hard limits a plan can only tighten.

Light on purpose (check-config and the api daemon import it): TOML and Structs only.
"""


import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from handshake.errors import ConfigError
from handshake.util.configfile import is_ip
from handshake.util.schema import Check, Derived, Parse, Section
from pi.control import profile as profiles
from pi.control.profile import Profile

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_LOAD_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Without a rating in the profile, a limit has no ceiling but this.
UNRATED_W = 100_000.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits: the Pi's own from config, or tighter ones from a plan."""

    max_charge_w: float
    max_discharge_w: float
    soc_min_pct: float = 10.0
    soc_max_pct: float = 100.0
    grid_import_max_w: float | None = None


def _is_host(value: str) -> bool:
    return is_ip(value) or bool(_HOSTNAME.match(value))


def _profile_of(kind: str) -> Parse:
    def parse(ref: object, file: Path) -> Profile:
        if not isinstance(ref, str):
            raise TypeError(ref)
        path = profiles.locate(ref, file)
        if not path.is_file():
            raise ConfigError([f"no profile {ref!r} (shipped: {', '.join(profiles.shipped())}; "
                               f"or a path to a profile TOML)"])
        try:
            return profiles.load(path, kind)
        except ConfigError as exc:
            raise ConfigError([f"profile {problem}" for problem in exc.problems]) from None

    return Parse(parse, f"a profile name or path ({kind})", "profile", with_file=True)


Host = Annotated[str, Check(_is_host, "an IP address or host name")]


def _shipped(name: str, kind: str) -> Profile:
    return profiles.load(profiles.locate(name, Path.cwd()), kind)


class LoadConfig(Section, frozen=True, kw_only=True):
    """A named on/off load the plan may switch (its own Modbus device)."""

    name: Annotated[str, Check(lambda v: bool(_LOAD_NAME.match(v)),
                               "a short lower-case name like \"boiler\""),
                    Meta(description="the name plans use")]
    address: Annotated[Host, Meta(description="its Modbus TCP device")]
    device_profile: Annotated[Profile | None, _profile_of("load"), Meta(
        description="a load profile")] = msgspec.field(default=None, name="profile")
    port: Annotated[int, Meta(ge=1, le=65535, description="Modbus TCP port")] = 502
    device_id: Annotated[int, Meta(ge=0, le=255, description="Modbus unit id")] = 1
    register: Annotated[int | None, Meta(
        ge=0, le=0xFFFF, description="the switch register, if not the profile's")] = None
    table: Annotated[Literal["holding", "coil"] | None, Meta(description="its table")] = None
    on_value: Annotated[float | None, Meta(ge=0, le=0xFFFF, description="value for on")] = None
    off_value: Annotated[float | None, Meta(ge=0, le=0xFFFF, description="value for off")] = None

    DERIVED: ClassVar[dict[str, Derived]] = {
        "device_profile": Derived(lambda _: _shipped("modbus-load", "load"), '"modbus-load"')}

    @classmethod
    def of(cls, *, profile: Profile, **kw: Any) -> "LoadConfig":
        """Built from parts (tests, benchmarks): the profile as it is."""
        return cls(device_profile=profile, **kw)

    @property
    def profile(self) -> Profile:
        assert self.device_profile is not None  # derived when unset
        return self.device_profile.with_switch(self.register, self.table, self.on_value,
                                               self.off_value)


def _rating(config: "ControlConfig", name: str) -> float:
    return getattr(config.device_profile, name) or UNRATED_W


class ControlConfig(Section, frozen=True, kw_only=True):
    device_profile: Annotated[Profile, _profile_of("inverter"), Meta(
        description="a shipped profile name, or a path to a profile TOML")] = \
        msgspec.field(name="profile")
    address: Annotated[Host, Meta(description="the inverter's Modbus TCP address")]
    port: Annotated[int, Meta(ge=1, le=65535, description="Modbus TCP port")] = 502
    device_id: Annotated[int, Meta(ge=0, le=255, description="Modbus unit id")] = 1
    tick_s: Annotated[float, Meta(ge=0.01, le=60, description="control loop period")] = 5.0
    # Re-verify at least every minute: a setpoint is only trusted while it is fresh.
    verify_s: Annotated[float, Meta(ge=0.05, le=60,
                                    description="setpoints are read back at least this often")] = 60.0
    settle_s: Annotated[float, Meta(ge=0, le=60, description="wait after a write before "
                                                            "reading it back")] = 2.0
    timeout_s: Annotated[float, Meta(ge=0.05, le=30, description="one Modbus request's deadline")] = 2.0
    write_budget_per_day: Annotated[int, Meta(
        ge=1, le=100_000, description="register writes a day at most (flash wear)")] = 200
    max_charge_w: Annotated[float, Meta(ge=0, description="hard limit; ≤ the profile's rating")] = \
        UNRATED_W
    max_discharge_w: Annotated[float, Meta(ge=0, description="hard limit; ≤ the profile's "
                                                              "rating")] = UNRATED_W
    soc_min_pct: Annotated[float, Meta(ge=0, le=100, description="never discharge below")] = 10.0
    soc_max_pct: Annotated[float, Meta(ge=0, le=100, description="never charge above")] = 100.0
    grid_import_max_w: Annotated[float | None, Meta(ge=0, description="grid import cap")] = None
    loads: Annotated[tuple[LoadConfig, ...], Meta(description="switchable loads")] = ()
    history_commit_s: Annotated[float, Meta(
        ge=0.01, le=3600, description="the energy history reaches sqlite at most this often "
                                      "(SD wear); energy.json follows each commit")] = 60.0
    # Three hours: a host that will not wake at once still has time to push a new plan.
    replan_before_s: Annotated[float, Meta(
        ge=0, le=86400, description="the api daemon wakes the host this long before the "
                                    "plan in force expires")] = 10800.0

    DERIVED: ClassVar[dict[str, Derived]] = {
        "max_charge_w": Derived(lambda c: _rating(c, "max_charge_w"), "the profile's rating"),
        "max_discharge_w": Derived(lambda c: _rating(c, "max_discharge_w"),
                                   "the profile's rating"),
    }

    def problems(self) -> Iterator[tuple[str, str]]:
        for name in ("max_charge_w", "max_discharge_w"):
            rating = _rating(self, name)
            if getattr(self, name) > rating:
                yield (name, f"expected a value ≤ {rating:g} (the profile's rating), "
                       f"got {getattr(self, name):g}")
        if self.soc_min_pct >= self.soc_max_pct:
            yield ("soc_min_pct", f"expected less than soc_max_pct ({self.soc_max_pct:g}), "
                   f"got {self.soc_min_pct:g}")
        if self.verify_s < self.tick_s:
            yield ("verify_s", f"expected at least tick_s ({self.tick_s:g}), got {self.verify_s:g}")
        names = [load.name for load in self.loads]
        for i, name in enumerate(names):
            if name in names[:i]:
                yield (f"loads[{i}].name", f"load {name!r} is defined twice")

    @classmethod
    def of(cls, *, profile: Profile, limits: Limits | None = None, **kw: Any) -> "ControlConfig":
        """Built from parts (tests, benchmarks); limits default to the profile's rating."""
        limits = limits or Limits(max_charge_w=profile.max_charge_w or UNRATED_W,
                                  max_discharge_w=profile.max_discharge_w or UNRATED_W)
        return cls(device_profile=profile, **dataclasses.asdict(limits), **kw)

    @property
    def profile(self) -> Profile:
        return self.device_profile

    @property
    def limits(self) -> Limits:
        return Limits(max_charge_w=self.max_charge_w, max_discharge_w=self.max_discharge_w,
                      soc_min_pct=self.soc_min_pct, soc_max_pct=self.soc_max_pct,
                      grid_import_max_w=self.grid_import_max_w)

    @property
    def load_names(self) -> tuple[str, ...]:
        return tuple(load.name for load in self.loads)
