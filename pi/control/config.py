"""``[control]`` in pi.toml: the device, its profile, timing, and the hard limits a plan can only tighten.

Light on purpose (check-config and the api daemon import it): TOML and dataclasses only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from handshake.configfile import Section, is_ip
from handshake.errors import ConfigError
from pi.control import profile as profiles
from pi.control.profile import Profile

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_LOAD_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits: the Pi's own from config, or tighter ones from a plan."""

    max_charge_w: float
    max_discharge_w: float
    soc_min_pct: float = 10.0
    soc_max_pct: float = 100.0
    grid_import_max_w: float | None = None


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """A named on/off load the plan may switch (its own Modbus device)."""

    name: str
    address: str
    profile: Profile
    port: int = 502
    device_id: int = 1


@dataclass(frozen=True, slots=True)
class ControlConfig:
    profile: Profile
    address: str
    limits: Limits
    port: int = 502
    device_id: int = 1
    tick_s: float = 5.0
    verify_s: float = 60.0
    settle_s: float = 2.0
    timeout_s: float = 2.0
    write_budget_per_day: int = 200
    loads: tuple[LoadConfig, ...] = ()

    @property
    def load_names(self) -> tuple[str, ...]:
        return tuple(load.name for load in self.loads)


def parse(section: Section, file: Path) -> ControlConfig:
    """Read ``[control]``; problems go to the section's collector (ConfigError from the caller)."""
    s = section
    profile = _profile(s, "profile", s.text("profile"), file, "inverter")
    address = s.check("address", s.text("address"), _is_host, "an IP address or host name")
    rating_charge = (profile.max_charge_w if profile else None) or 100_000.0
    rating_discharge = (profile.max_discharge_w if profile else None) or 100_000.0
    limits = Limits(
        max_charge_w=s.number("max_charge_w", rating_charge, lo=0, hi=rating_charge),
        max_discharge_w=s.number("max_discharge_w", rating_discharge, lo=0, hi=rating_discharge),
        soc_min_pct=s.number("soc_min_pct", 10.0, lo=0, hi=100),
        soc_max_pct=s.number("soc_max_pct", 100.0, lo=0, hi=100),
        grid_import_max_w=s.number("grid_import_max_w", None, lo=0),
    )
    if isinstance(limits.soc_min_pct, float) and isinstance(limits.soc_max_pct, float) \
            and limits.soc_min_pct >= limits.soc_max_pct:
        s.problems.add(s.key("soc_min_pct"), f"expected less than soc_max_pct "
                       f"({limits.soc_max_pct:g}), got {limits.soc_min_pct:g}")
    config = ControlConfig(
        profile=profile,  # type: ignore[arg-type]  # None only alongside a reported problem
        address=address,
        limits=limits,
        port=s.integer("port", 502, lo=1, hi=65535),
        device_id=s.integer("device_id", 1, lo=0, hi=255),
        tick_s=s.number("tick_s", 5.0, lo=0.01, hi=60),
        # Re-verify at least every minute: a setpoint is only trusted while it is fresh.
        verify_s=s.number("verify_s", 60.0, lo=0.05, hi=60),
        settle_s=s.number("settle_s", 2.0, lo=0, hi=60),
        timeout_s=s.number("timeout_s", 2.0, lo=0.05, hi=30),
        write_budget_per_day=s.integer("write_budget_per_day", 200, lo=1, hi=100_000),
        loads=tuple(_loads(s, file)),
    )
    if isinstance(config.verify_s, float) and isinstance(config.tick_s, float) \
            and config.verify_s < config.tick_s:
        s.problems.add(s.key("verify_s"), f"expected at least tick_s ({config.tick_s:g}), "
                       f"got {config.verify_s:g}")
    s.done()
    return config


def _loads(s: Section, file: Path) -> list[LoadConfig]:
    out: list[LoadConfig] = []
    names: set[str] = set()
    for entry in s.table_list("loads"):
        name = entry.check("name", entry.text("name"), lambda v: bool(_LOAD_NAME.match(v)),
                           "a short lower-case name like \"boiler\"")
        if name in names:
            entry.problems.add(entry.key("name"), f"load {name!r} is defined twice")
        names.add(name)
        profile = _profile(entry, "profile", entry.text("profile", "modbus-load"), file, "load")
        register = entry.integer("register", None, lo=0, hi=0xFFFF)
        table = entry.text("table", None, choices=profiles.WRITE_TABLES)
        on = entry.number("on_value", None, lo=0, hi=0xFFFF)
        off = entry.number("off_value", None, lo=0, hi=0xFFFF)
        load = LoadConfig(
            name=name,
            address=entry.check("address", entry.text("address"), _is_host,
                                "an IP address or host name"),
            profile=profile.with_switch(register, table, on, off) if profile else profile,  # type: ignore[arg-type]
            port=entry.integer("port", 502, lo=1, hi=65535),
            device_id=entry.integer("device_id", 1, lo=0, hi=255),
        )
        entry.done()
        out.append(load)
    return out


def _profile(s: Section, key: str, ref: object, file: Path, kind: str) -> Profile | None:
    if not isinstance(ref, str):
        return None
    path = profiles.locate(ref, file)
    if not path.is_file():
        shipped = ", ".join(profiles.shipped())
        s.problems.add(s.key(key), f"no profile {ref!r} (shipped: {shipped}; or a path to a "
                       f"profile TOML)")
        return None
    try:
        return profiles.load(path, kind)
    except ConfigError as exc:
        for problem in exc.problems:
            s.problems.add(s.key(key), f"profile {problem}")
        return None


def _is_host(value: str) -> bool:
    return is_ip(value) or bool(_HOSTNAME.match(value))
