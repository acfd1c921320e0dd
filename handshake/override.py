"""A manual override of the plan (``POST /api/v1/control/override``): the request, checked
against the Pi's hard limits, and the stored form the control daemon reads.

```json
{"mode": "auto"|"safe"|"hold"|"charge"|"discharge", "until": ISO, "target_soc"?: %, "power_w"?: W}
```
``auto`` ends an override (back to the plan); every other mode needs ``until``, at most
``MAX_S`` ahead: an override always ends by itself. ``charge`` needs ``power_w`` and
``target_soc``; ``discharge`` needs ``power_w`` (``target_soc``: where it stops, else the
Pi's floor); ``hold`` and ``safe`` take neither. Values are checked against the hard limits
(``handshake.modes``), and a value past one names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handshake import modes
from handshake.errors import ValidationError
from handshake.modes import Command, HardLimits
from handshake.util.timeutil import iso, parse_iso

SCHEMA = "edgepair.override/1"
AUTO, SAFE = "auto", "safe"
MODES = (AUTO, SAFE, modes.HOLD, modes.CHARGE, modes.DISCHARGE)
MAX_S = 24 * 3600
KEYS = {"mode", "until", "target_soc", "power_w"}
SOURCES = ("api", "cli", "host")


@dataclass(frozen=True, slots=True)
class Override:
    mode: str  # safe | hold | charge | discharge
    until: datetime
    set_at: datetime
    power_w: float | None = None
    soc_target: float | None = None
    source: str = "api"

    @property
    def command(self) -> Command | None:
        """The battery mode to carry out; None for ``safe``."""
        return None if self.mode == SAFE else Command(self.mode, self.power_w, self.soc_target)

    def active(self, now: datetime) -> bool:
        return now < self.until

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "mode": self.mode, "until": iso(self.until),
                "set_at": iso(self.set_at), "power_w": self.power_w,
                "target_soc": self.soc_target, "source": self.source}

    def describe(self) -> str:
        what = {SAFE: "the safe state", modes.HOLD: "hold the battery",
                modes.CHARGE: f"charge at {self.power_w:g} W to {self.soc_target:g} %"
                if self.power_w is not None and self.soc_target is not None else "charge",
                modes.DISCHARGE: f"discharge at {self.power_w:g} W" + (
                    f" down to {self.soc_target:g} %" if self.soc_target is not None else "")
                if self.power_w is not None else "discharge"}[self.mode]
        return f"manual override ({self.source}): {what} until {iso(self.until)}"


def check(body: Any, limits: HardLimits, now: datetime, source: str = "api") -> Override | None:
    """The request checked; None for ``auto`` (end the override). ValidationError names the field."""
    if not isinstance(body, dict):
        raise ValidationError(f"expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise ValidationError(f"unknown field (expected {', '.join(sorted(KEYS))})", unknown[0])
    mode = body.get("mode")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValidationError(f"expected one of {', '.join(MODES)}, got {mode!r}", "mode")
    if mode == AUTO:  # takes nothing (an until is read, not needed)
        for key in ("power_w", "target_soc"):
            if body.get(key) is not None:
                raise ValidationError("not allowed with mode auto (it ends the override)", key)
        if body.get("until") is not None:
            _time(body["until"])
        return None
    until = _until(body.get("until"), now)
    _named_limits(body, mode, limits)
    raw = {"battery_mode": mode, "power_w": body.get("power_w"),
           "soc_target": body.get("target_soc")}
    if mode == SAFE:
        for key in ("power_w", "target_soc"):
            if body.get(key) is not None:
                raise ValidationError("not allowed with mode safe", key)
        return Override(SAFE, until, now, source=source)
    try:
        command = modes.check(raw, limits)
    except ValidationError as exc:
        field = "target_soc" if exc.field == "soc_target" else exc.field
        message = str(exc).replace("slot", "override")
        if exc.field and message.startswith(f"{exc.field}: "):
            message = message[len(exc.field) + 2:]
        raise ValidationError(message, field) from None
    return Override(mode, until, now, command.power_w, command.soc_target, source)


def _until(value: Any, now: datetime) -> datetime:
    if value is None:
        raise ValidationError("required: an override always ends (at most 24 h from now)", "until")
    until = _time(value)
    if until <= now:
        raise ValidationError(f"{iso(until)} is not in the future", "until")
    if (until - now).total_seconds() > MAX_S:
        raise ValidationError(f"{iso(until)} is more than {MAX_S // 3600} h from now", "until")
    return until


def _time(value: Any) -> datetime:
    try:
        if not isinstance(value, str):
            raise ValueError("expected an ISO 8601 string")
        return parse_iso(value)
    except ValueError as exc:
        raise ValidationError(f"expected a UTC time like 2026-01-01T13:00:00Z ({exc}), "
                              f"got {value!r}", "until") from None


def _named_limits(body: Mapping[str, Any], mode: str, limits: HardLimits) -> None:
    """A number past a hard limit: 400 naming the limit (max_charge_w, soc_max_pct …)."""
    power, soc = body.get("power_w"), body.get("target_soc")
    if isinstance(power, int | float) and _finite(power):
        name = {modes.CHARGE: "max_charge_w", modes.DISCHARGE: "max_discharge_w"}.get(mode)
        if name is not None and power > getattr(limits, name):
            raise ValidationError(f"{power:g} W is above the Pi's hard limit {name} = "
                                  f"{getattr(limits, name):g} W", "power_w")
    if isinstance(soc, int | float) and _finite(soc) and mode in (modes.CHARGE, modes.DISCHARGE):
        if soc > limits.soc_max_pct:
            raise ValidationError(f"{soc:g} % is above the Pi's hard limit soc_max_pct = "
                                  f"{limits.soc_max_pct:g} %", "target_soc")
        if soc < limits.soc_min_pct:
            raise ValidationError(f"{soc:g} % is below the Pi's hard limit soc_min_pct = "
                                  f"{limits.soc_min_pct:g} %", "target_soc")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load(doc: Any) -> Override:
    """The stored override (``private/override.json``); ValueError when it is not one."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"expected a {SCHEMA} document")
    mode = doc.get("mode")
    if mode not in MODES[1:]:
        raise ValueError(f"unknown override mode {mode!r}")
    power, soc, source = doc.get("power_w"), doc.get("target_soc"), doc.get("source")
    return Override(mode, parse_iso(doc["until"]), parse_iso(doc["set_at"]),
                    float(power) if isinstance(power, int | float) and _finite(power) else None,
                    float(soc) if isinstance(soc, int | float) and _finite(soc) else None,
                    source if isinstance(source, str) and source in SOURCES else "api")
