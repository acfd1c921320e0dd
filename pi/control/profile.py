"""Device profiles: TOML register maps for telemetry, the writes of each mode and the safe state.

A profile names registers and says, per mode, what each control register holds: a constant,
the commissioned ``"baseline"`` (what the device held before edgepair touched it), a value
from the plan's slot (``{from = "power_w", factor = …}``) or ``"keep"`` (not this mode's
business: neither written nor verified). The safe state names every control register.
Engineering value = raw × scale; control registers are 16-bit (telemetry may be a 32-bit value).
Light: no device library here.

Addressing: a ``fixed`` profile gives each register's address. A ``sunspec`` profile names
SunSpec model points instead (``model = 124, point = "InWRte"``): where a model lives and
the scale factors are the device's own, so they are found at run time (``pi.control.sunspec``
walks the model chain from the "SunS" marker and :meth:`Profile.resolved` gets the concrete
profile). This is a property of the profile, not a new kind: a SunSpec inverter is still an
``inverter`` with the same modes, safe state and commissioning. ``[identify]`` (either
addressing) names a register and the values that say "this is the device the profile is for":
checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handshake.errors import FatalError
from handshake.modes import BATTERY_MODES
from handshake.util.configfile import Problems, Section, load_toml, resolve
from pi.control import sunspec_models

PROFILES_DIR = Path(__file__).parent / "profiles"
KINDS = ("inverter", "load")
MODES = {"inverter": BATTERY_MODES, "load": ("on", "off")}
# Modes of the first vocabulary: every inverter profile has them. The others are optional
# (a profile written before them still loads); the Pi refuses plans that use a mode its
# profile lacks.
REQUIRED_MODES = {"inverter": ("normal", "hold", "charge"), "load": ("on", "off")}
TELEMETRY = ("soc_pct", "battery_w", "grid_w")
READ_TABLES = ("holding", "input")
WRITE_TABLES = ("holding", "coil")
SOURCES = ("power_w", "soc_target", "export_cap_w")
# The Pi's hard limits ([control]) a power register may be capped by.
LIMIT_NAMES = ("max_charge_w", "max_discharge_w")
ADDRESSING = ("fixed", "sunspec")
# Where a SunSpec device's register map may start ("SunS" at the first two registers).
SUNSPEC_BASES = (40000, 50000, 0)
# SunSpec point types a profile may read or write (strings and accumulators are not telemetry).
SUNSPEC_TELEMETRY_TYPES = ("uint16", "int16", "float32")
SUNSPEC_CONTROL_TYPES = ("uint16", "int16", "enum16", "bitfield16")


class NotCommissioned(FatalError):
    """A value needs the device's baseline, which was never read (`edgepair control commission`)."""


class ImplausibleTelemetry(FatalError):
    """A telemetry value lies outside the profile's plausible range."""


class WrongDevice(FatalError):
    """The device is not what the profile is for (its identity, its SunSpec models)."""


@dataclass(frozen=True, slots=True)
class Register:
    """One register or coil (a 32-bit telemetry value: two): where it is and how raw counts map to units."""

    name: str
    address: int
    table: str = "holding"
    scale: float = 1.0
    signed: bool = False
    min: float | None = None
    max: float | None = None
    default: float | None = None
    # A power register the Pi's own hard limit of this name caps (max_charge_w or
    # max_discharge_w): no write, not even the commissioned safe state, goes above it.
    # ``limit_factor``: the register's units per W (a current at the battery's voltage).
    limit: str | None = None
    limit_factor: float = 1.0
    words: int = 1  # 2: a 32-bit value, high word first (raw is the 32-bit number)
    float32: bool = False  # with words = 2: an IEEE 754 single
    # A SunSpec point (addressing = "sunspec"): the first of these models the device has,
    # and the point's name; ``percent_of``: a point of the same model the value is a
    # percentage of (InWRte of WChaMax), so that the register reads and writes in W.
    model: tuple[int, ...] = ()
    point: str = ""
    percent_of: str = ""

    def decode(self, raw: int) -> float:
        if self.table == "coil":
            return float(bool(raw))
        if self.words == 2:
            if self.float32:
                return float(struct.unpack(">f", raw.to_bytes(4, "big"))[0]) * self.scale
            value = raw - 0x1_0000_0000 if self.signed and raw >= 0x8000_0000 else raw
            return value * self.scale
        value = raw - 0x10000 if self.signed and raw >= 0x8000 else raw
        return value * self.scale

    def encode(self, value: float) -> int:
        """Engineering value → raw count, clamped into the register's limits."""
        if self.min is not None:
            value = max(value, self.min)
        if self.max is not None:
            value = min(value, self.max)
        if self.table == "coil":
            return int(bool(value))
        count = round(value / self.scale)
        lo, hi = (-0x8000, 0x7FFF) if self.signed else (0, 0xFFFF)
        count = min(max(count, lo), hi)
        return count & 0xFFFF


@dataclass(frozen=True, slots=True)
class Write:
    """A control register's value in one mode."""

    kind: str  # const | baseline | source | keep
    value: float = 0.0
    source: str = ""
    factor: float = 1.0
    offset: float = 0.0
    otherwise: Write | None = None  # when the slot has no value for ``source``


@dataclass(frozen=True, slots=True)
class Identify:
    """A register whose value says which device answers, and the values the profile is for."""

    register: Register
    values: tuple[int, ...]
    what: str = ""

    def check(self, raw: int, profile: str) -> None:
        """WrongDevice unless ``raw`` is one of the expected values."""
        if raw not in self.values:
            expected = " or ".join(str(v) for v in self.values)
            raise WrongDevice(f"the device is not one profile {profile} is for: "
                              f"{self.what or 'register'} {self.register.table} "
                              f"{self.register.address} reads {raw}, expected {expected}")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: str
    description: str
    file: Path
    verify_on_unit: bool = True
    max_charge_w: float | None = None
    max_discharge_w: float | None = None
    telemetry: Mapping[str, Register] = field(default_factory=dict)
    registers: Mapping[str, Register] = field(default_factory=dict)
    modes: Mapping[str, Mapping[str, Write]] = field(default_factory=dict)
    safe: Mapping[str, Write] = field(default_factory=dict)
    addressing: str = "fixed"
    identify: Identify | None = None
    sunspec_bases: tuple[int, ...] = SUNSPEC_BASES
    # After SunSpec discovery: who the device says it is ("Mn Md SN") and where each model is.
    device: str = ""
    models: Mapping[int, int] = field(default_factory=dict)

    @property
    def needs_probe(self) -> bool:
        """Whether the device must be probed (identified, discovered) before any write."""
        return self.identify is not None or (self.addressing == "sunspec" and not self.models)

    def resolved(self, telemetry: Mapping[str, Register], registers: Mapping[str, Register],
                 device: str, models: Mapping[int, int]) -> Profile:
        """This profile with concrete registers (a SunSpec discovery's result)."""
        return dataclasses.replace(self, telemetry=dict(telemetry), registers=dict(registers),
                                   device=device, models=dict(models))

    def targets(self, mode: str | None, values: Mapping[str, float | None],
                baseline: Mapping[str, int],
                caps: Mapping[str, float] | None = None) -> dict[str, int]:
        """Raw values for ``mode`` (None: the safe state); NotCommissioned if a baseline is missing.

        ``caps``: the Pi's hard limits by name; a register with ``limit`` never exceeds its one.
        """
        writes = self.safe if mode is None else self.modes[mode]
        out: dict[str, int] = {}
        for name, write in writes.items():
            reg = self.registers[name]
            raw = self._raw(reg, write, values, baseline)
            if raw is None:
                continue
            cap = (caps or {}).get(reg.limit) if reg.limit is not None else None
            if cap is not None and reg.decode(raw) > cap * reg.limit_factor:
                raw = reg.encode(cap * reg.limit_factor)
            out[name] = raw
        return out

    def _raw(self, reg: Register, write: Write, values: Mapping[str, float | None],
             baseline: Mapping[str, int]) -> int | None:
        if write.kind == "keep":
            return None
        if write.kind == "const":
            return reg.encode(write.value)
        if write.kind == "baseline":
            if reg.name in baseline:
                return baseline[reg.name]
            if reg.default is not None:
                return reg.encode(reg.default)
            raise NotCommissioned(f"register {reg.name!r} needs the device's baseline: "
                                  "run `edgepair control commission`")
        value = values.get(write.source)
        if value is None:
            if write.otherwise is None:
                raise ValueError(f"the slot has no {write.source} for register {reg.name!r}")
            return self._raw(reg, write.otherwise, values, baseline)
        return reg.encode(value * write.factor + write.offset)

    def takes(self, mode: str, source: str) -> bool:
        """Whether ``mode`` writes a register from the slot's ``source`` (export_cap_w …)."""
        return any(_reads(w, source) for w in self.modes.get(mode, {}).values())

    def decode_telemetry(self, raws: Mapping[str, int]) -> dict[str, float]:
        """Telemetry in units; ImplausibleTelemetry when a value is outside its range."""
        out = {}
        for name, reg in self.telemetry.items():
            value = reg.decode(raws[name])
            if math.isnan(value) or (reg.min is not None and value < reg.min) \
                    or (reg.max is not None and value > reg.max):
                raise ImplausibleTelemetry(f"{name} = {value:g} is outside the plausible "
                                           f"range {_bound(reg.min)}…{_bound(reg.max)}")
            out[name] = value
        return out

    def with_switch(self, address: int | None, table: str | None,
                    on: float | None, off: float | None) -> Profile:
        """A load profile with its one register moved or its on/off values changed."""
        (name, reg), = self.registers.items()
        reg = dataclasses.replace(reg, address=reg.address if address is None else address,
                                  table=table or reg.table)
        modes = dict(self.modes)
        if on is not None:
            modes["on"] = {name: Write("const", on)}
        if off is not None:
            modes["off"] = {name: Write("const", off)}
        return dataclasses.replace(self, registers={name: reg}, modes=modes)


def _reads(write: Write | None, source: str) -> bool:
    return write is not None and (write.source == source or _reads(write.otherwise, source))


def _bound(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def shipped() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))


def locate(ref: str, config_file: Path) -> Path:
    """A shipped profile's name, or a path (relative to the config file)."""
    if "/" not in ref and not ref.endswith(".toml"):
        return PROFILES_DIR / f"{ref}.toml"
    return resolve(config_file, ref)


def load(path: Path, kind: str | None = None) -> Profile:
    """Parse and check a profile file; ConfigError lists every problem."""
    problems = Problems(path)
    profile = parse(Section(problems, "", load_toml(path)), path, kind)
    problems.raise_if_any()
    return profile


def parse(root: Section, path: Path, kind: str | None = None) -> Profile:
    """Read a profile from a TOML table (problems go to ``root.problems``)."""
    s = root.sub("profile")
    name = s.text("name", path.stem)
    found = s.text("kind", "inverter", choices=KINDS)
    if kind is not None and found != kind:
        s.problems.add("profile.kind", f"expected kind = {kind!r} here, got {found!r}")
    head = {"description": s.text("description", ""), "verify_on_unit": s.flag("verify_on_unit", True),
            "max_charge_w": s.number("max_charge_w", None, lo=0),
            "max_discharge_w": s.number("max_discharge_w", None, lo=0)}
    addressing = s.text("addressing", "fixed", choices=ADDRESSING)
    bases = _addresses(s, "sunspec_bases", SUNSPEC_BASES)
    s.done()
    sunspec = addressing == "sunspec"
    telemetry = _registers(root.sub("telemetry"), READ_TABLES, sunspec, SUNSPEC_TELEMETRY_TYPES)
    registers = _registers(root.sub("registers"), WRITE_TABLES, sunspec, SUNSPEC_CONTROL_TYPES)
    identify = _identify(root.sub("identify")) if "identify" in root.data else None
    modes_section = root.sub("modes")
    required = REQUIRED_MODES.get(found, ())
    modes = {m: _writes(modes_section.sub(m), registers, allow_keep=True)
             for m in MODES.get(found, ()) if m in required or m in modes_section.data}
    modes_section.done()
    safe = _writes(root.sub("safe"), registers, allow_keep=False)
    if found == "inverter":
        for t in TELEMETRY:
            if t not in telemetry:
                root.problems.add(f"telemetry.{t}", "required for an inverter profile")
    if not registers:
        root.problems.add("registers", "expected at least one control register")
    if found == "load" and len(registers) != 1:
        root.problems.add("registers", "a load profile has exactly one register (the switch)")
    root.done()
    return Profile(name=name, kind=found, file=path, telemetry=telemetry, registers=registers,
                   modes=modes, safe=safe, addressing=addressing, identify=identify,
                   sunspec_bases=bases, **head)


def _registers(s: Section, tables: tuple[str, ...], sunspec: bool = False,
               types: tuple[str, ...] = ()) -> dict[str, Register]:
    out = {}
    for name in list(s.data):
        r = s.sub(name)
        point = _point(r, types) if sunspec else None
        address = 0 if point is not None else r.integer("address", lo=0, hi=0xFFFF)
        reg = Register(name=name, address=address,
                       table="holding" if sunspec else r.text("table", "holding", choices=tables),
                       scale=r.number("scale", 1.0), signed=r.flag("signed", False),
                       min=r.number("min", None), max=r.number("max", None),
                       default=r.number("default", None),
                       limit=r.text("limit", None, choices=LIMIT_NAMES),
                       limit_factor=r.number("limit_factor", 1.0),
                       **(point or {}))
        r.check("scale", reg.scale, lambda v: isinstance(v, float) and v != 0 and math.isfinite(v),
                "a non-zero number")
        r.done()
        if isinstance(reg.address, int) and (not sunspec or point is not None):
            out[name] = reg
    return out


def _point(r: Section, types: tuple[str, ...]) -> dict[str, Any] | None:
    """A SunSpec register's ``model`` (an id or a list: the first the device has), ``point``
    and ``percent_of``, checked against the known models; None after a problem."""
    raw = r.data.get("model")
    r.seen.add("model")
    models = tuple(raw) if isinstance(raw, list) else (raw,)
    known = ", ".join(str(m) for m in sunspec_models.MODELS)
    if raw is None or not models or not all(isinstance(m, int) and not isinstance(m, bool)
                                            and m in sunspec_models.MODELS for m in models):
        r.problems.add(r.key("model"), f"expected a SunSpec model id or a list of them "
                       f"(known: {known}), got {raw!r}")
        return None
    point = r.text("point")
    percent_of = r.text("percent_of", "")
    if not isinstance(point, str) or not isinstance(percent_of, str):
        return None
    for m in models:
        p = sunspec_models.MODELS[m].points.get(point)
        if p is None or p.type not in types:
            r.problems.add(r.key("point"), f"expected a point of model {m} of type "
                           f"{'/'.join(types)}, got {point!r}")
            return None
        if percent_of and percent_of not in sunspec_models.MODELS[m].points:
            r.problems.add(r.key("percent_of"), f"expected a point of model {m}, got {percent_of!r}")
            return None
    return {"model": models, "point": point, "percent_of": percent_of}


def _addresses(s: Section, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = s.data.get(key, list(default))
    s.seen.add(key)
    if not isinstance(raw, list) or not raw or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in raw):
        s.problems.add(s.key(key), f"expected a list of register addresses 0-65535, got {raw!r}")
        return default
    return tuple(raw)


def _identify(s: Section) -> Identify | None:
    address = s.integer("address", lo=0, hi=0xFFFF)
    table = s.text("table", "holding", choices=READ_TABLES)
    raw = s.data.get("values")
    s.seen.add("values")
    what = s.text("what", "")
    s.done()
    if not isinstance(raw, list) or not raw or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in raw):
        s.problems.add(s.key("values"), f"expected a list of raw register values, got {raw!r}")
        return None
    if not isinstance(address, int):
        return None
    return Identify(Register("identify", address, table), tuple(raw), what)


def _writes(s: Section, registers: Mapping[str, Register], *, allow_keep: bool) -> dict[str, Write]:
    out = {}
    for name in registers:
        if name not in s.data:
            s.problems.add(s.key(name), "required: every mode and the safe state name every "
                           "control register (\"keep\" leaves it alone)" if allow_keep else
                           "required: the safe state names every control register")
            continue
        write = _write(s, name, s.data[name], allow_keep)
        s.seen.add(name)
        if write is not None:
            out[name] = write
    s.done()
    return out


def _write(s: Section, name: str, value: Any, allow_keep: bool) -> Write | None:
    key = s.key(name)
    if isinstance(value, bool):
        return Write("const", float(value))
    if isinstance(value, int | float):
        return Write("const", float(value))
    if value == "baseline" or (value == "keep" and allow_keep):
        return Write(value)
    if isinstance(value, dict):
        t = s.sub(name)
        source = t.text("from", choices=SOURCES)
        otherwise = t.data.get("otherwise")
        t.seen.add("otherwise")
        fallback = _write(t, "otherwise", otherwise, False) if otherwise is not None else None
        write = Write("source", source=source, factor=t.number("factor", 1.0),
                      offset=t.number("offset", 0.0), otherwise=fallback)
        t.done()
        return write
    choices = '"baseline", "keep"' if allow_keep else '"baseline"'
    s.problems.add(key, f"expected a number, {choices} or {{from = \"power_w\"|\"soc_target\"|"
                   f"\"export_cap_w\", factor = …}}, got {value!r}")
    return None
