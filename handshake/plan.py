"""The energy plan, ``edgepair.plan/1``: its document type, the slot length and its validation.

```json
{"schema": "edgepair.plan/1", "id": "…", "seq": 17,
 "generated_at": ISO, "valid_from": ISO, "valid_until": ISO, "slot_s": 900,
 "limits": {"max_charge_w": …, "soc_min_pct": …},            (optional: may only tighten)
 "optimizer": {"status": "optimal", …},
 "slots": [{"start": ISO, "battery_mode": "normal|hold|charge|discharge|limit_export",
            "power_w": W|null, "soc_target": %|null, "export_cap_w": W (optional),
            "loads": {"boiler": true}}, …]}
```
The modes and their parameters are ``handshake.modes`` (the table there): ``power_w`` is the
charge power of ``charge``, the discharge power of ``discharge`` and an optional discharge
cap of ``normal``/``limit_export``; ``soc_target`` is where ``charge`` stops (required) and
``discharge`` stops (optional); ``export_cap_w`` caps the feed-in. Plans of the first
vocabulary (normal/hold/charge, no export_cap_w) are the same documents as before.
``optimizer.savings_eur`` is what the host expects the plan to save against doing nothing.
A load a slot does not name stays in its safe state.

The host builds a ``PlanDocument`` and checks it with ``validate(doc, UNBOUNDED, None)``; the
Pi validates what it receives against its own hard limits and configured loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import msgspec

from handshake import modes
from handshake.errors import ValidationError
from handshake.modes import BATTERY_MODES, Command, HardLimits
from handshake.util.timeutil import iso, parse_iso

__all__ = ["BATTERY_MODES", "LIMIT_KEYS", "MAX_HORIZON_S", "OPTIMIZER_STATUSES", "SCHEMA", "SLOT_S",
           "UNBOUNDED", "Command", "HardLimits", "Limits", "Plan", "PlanDocument", "PlanSlot",
           "Slot", "validate"]

SCHEMA = "edgepair.plan/1"
# One slot of a plan: the quarter hour of the day-ahead and intraday markets.
SLOT_S = 900
# A day-ahead market publishes tomorrow at ~13:00 CET: a plan never needs more than two days.
MAX_HORIZON_S = 48 * 3600
OPTIMIZER_STATUSES = ("optimal", "feasible", "fallback", "manual")
MAX_ID_LEN = 80
LIMIT_KEYS = ("max_charge_w", "max_discharge_w", "soc_min_pct", "soc_max_pct", "grid_import_max_w")
_TOP_KEYS = {"schema", "id", "seq", "generated_at", "valid_from", "valid_until", "slot_s",
             "limits", "optimizer", "slots"}
_SLOT_KEYS = {"start", "battery_mode", "power_w", "soc_target", "export_cap_w", "loads"}


L = TypeVar("L", bound=HardLimits)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits as a plan states them (the Pi has its own, of the same fields)."""

    max_charge_w: float
    max_discharge_w: float
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    grid_import_max_w: float | None = None


# No limits but physics: what the host checks its own plan against (the Pi checks its own).
UNBOUNDED = Limits(max_charge_w=math.inf, max_discharge_w=math.inf)


class PlanSlot(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One slot as the host writes it (``loads`` left out when there are none)."""

    start: str
    battery_mode: str
    power_w: float | None
    soc_target: float | None
    export_cap_w: float | None = None
    loads: dict[str, bool] = {}


class PlanDocument(msgspec.Struct, frozen=True, kw_only=True, tag_field="schema", tag=SCHEMA):
    """The plan document the host builds and pushes (``PUT /api/v1/plan``)."""

    id: str
    seq: int
    generated_at: str
    valid_from: str
    valid_until: str
    slot_s: int = SLOT_S
    limits: dict[str, float] | None = None
    optimizer: dict[str, Any]
    slots: list[PlanSlot]

    def to_json(self) -> dict[str, Any]:
        """The document as JSON values (the body is signed as it is serialised, once)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        if out.get("limits") is None:
            out.pop("limits", None)
        return out


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime
    battery_mode: str
    power_w: float | None = None
    soc_target: float | None = None
    loads: Mapping[str, bool] = field(default_factory=dict)
    export_cap_w: float | None = None

    @property
    def command(self) -> Command:
        return Command(self.battery_mode, self.power_w, self.soc_target, self.export_cap_w)


@dataclass(frozen=True, slots=True)
class Plan(Generic[L]):
    """A validated plan."""

    id: str
    seq: int
    generated_at: datetime
    valid_from: datetime
    valid_until: datetime
    slots: tuple[Slot, ...]
    limits: L  # the effective limits: the Pi's, tightened by the plan's
    optimizer: Mapping[str, Any] = field(default_factory=dict)
    slot_s: int = SLOT_S

    def slot_at(self, now: datetime) -> Slot | None:
        """The slot in force at ``now``; None before valid_from or from valid_until on."""
        if not self.valid_from <= now < self.valid_until:
            return None
        return self.slots[int((now - self.valid_from).total_seconds() // self.slot_s)]

    def summary(self, now: datetime) -> dict[str, Any]:
        """What control.json says about the plan in force."""
        status = ("expired" if now >= self.valid_until else
                  "pending" if now < self.valid_from else "active")
        savings = self.optimizer.get("savings_eur")
        return {"id": self.id, "seq": self.seq, "valid_until": iso(self.valid_until),
                "status": status, "optimizer": self.optimizer.get("status"),
                "savings_eur": savings if isinstance(savings, int | float)
                and not isinstance(savings, bool) and math.isfinite(savings) else None,
                "reason": _text(self.optimizer.get("reason"))}


def validate(doc: Any, limits: L, loads: Collection[str] | None,
             now: datetime | None = None) -> Plan[L]:
    """Check a plan document; ValidationError names the field.

    ``limits``: the hard limits it must keep (``UNBOUNDED``: only its shape); ``loads``: the
    load names it may switch (None: any); ``now``: also refuse expired plans.
    """
    if not isinstance(doc, dict):
        raise ValidationError(f"expected a JSON object, got {type(doc).__name__}")
    plan_id, seq = _identity(doc)
    generated, start, until = _window(doc, now)
    effective = _limits(doc.get("limits"), limits)
    optimizer = _optimizer(doc)
    raw_slots = _raw_slots(doc, int((until - start).total_seconds() // SLOT_S))
    slots = tuple(_slot(raw, i, start + timedelta(seconds=i * SLOT_S), effective, loads)
                  for i, raw in enumerate(raw_slots))
    return Plan(id=plan_id, seq=seq, generated_at=generated, valid_from=start, valid_until=until,
                slots=slots, limits=effective, optimizer=optimizer)


def _identity(doc: dict[str, Any]) -> tuple[str, int]:
    """Known fields only, the schema, and the plan's id and sequence number."""
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise ValidationError(f"unknown field (expected {', '.join(sorted(_TOP_KEYS))})", unknown[0])
    if doc.get("schema") != SCHEMA:
        raise ValidationError(f"expected {SCHEMA!r}, got {doc.get('schema')!r}", "schema")
    plan_id = doc.get("id")
    if not isinstance(plan_id, str) or not 0 < len(plan_id) <= MAX_ID_LEN or not plan_id.isprintable():
        raise ValidationError(f"expected a printable string of 1-{MAX_ID_LEN} characters", "id")
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise ValidationError(f"expected a non-negative integer, got {seq!r}", "seq")
    return plan_id, seq


def _window(doc: dict[str, Any], now: datetime | None) -> tuple[datetime, datetime, datetime]:
    """generated_at, valid_from and valid_until: whole slots, within the horizon, not expired."""
    slot_s = doc.get("slot_s")
    if slot_s != SLOT_S or isinstance(slot_s, bool):
        raise ValidationError(f"expected {SLOT_S}, got {slot_s!r}", "slot_s")
    generated = _time(doc, "generated_at")
    start, until = _time(doc, "valid_from"), _time(doc, "valid_until")
    if start.timestamp() % SLOT_S:
        raise ValidationError(f"expected a slot boundary (a multiple of {SLOT_S} s since the "
                              f"epoch, e.g. :00, :15, :30, :45), got {iso(start)}", "valid_from")
    span = (until - start).total_seconds()
    if span <= 0 or span % SLOT_S:
        raise ValidationError(f"expected valid_from + a whole number of slots, got {iso(until)}",
                              "valid_until")
    if span > MAX_HORIZON_S:
        raise ValidationError(f"horizon of {span / 3600:g} h exceeds the {MAX_HORIZON_S // 3600} h "
                              "limit", "valid_until")
    if now is not None and until <= now:
        raise ValidationError(f"the plan expired at {iso(until)}", "valid_until")
    if now is not None and (start - now).total_seconds() > MAX_HORIZON_S:
        raise ValidationError(f"starts more than {MAX_HORIZON_S // 3600} h from now", "valid_from")
    return generated, start, until


def _optimizer(doc: dict[str, Any]) -> dict[str, Any]:
    optimizer = doc.get("optimizer", {})
    if not isinstance(optimizer, dict) or optimizer.get("status") not in OPTIMIZER_STATUSES:
        raise ValidationError(f"expected an object with status one of "
                              f"{', '.join(OPTIMIZER_STATUSES)}", "optimizer.status")
    return optimizer


def _raw_slots(doc: dict[str, Any], count: int) -> list[Any]:
    raw_slots = doc.get("slots")
    if not isinstance(raw_slots, list) or len(raw_slots) != count:
        got = len(raw_slots) if isinstance(raw_slots, list) else type(raw_slots).__name__
        raise ValidationError(f"expected {count} slots from valid_from to valid_until, got {got}",
                              "slots")
    return raw_slots


def _time(doc: Mapping[str, Any], key: str, path: str | None = None) -> datetime:
    value = doc.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError("expected an ISO 8601 string")
        return parse_iso(value)
    except ValueError as exc:
        raise ValidationError(f"expected a UTC time like 2026-01-01T13:00:00Z ({exc}), "
                              f"got {value!r}", path or key) from None


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _limits(raw: Any, pi: L) -> L:
    """The plan's limits may only tighten the Pi's."""
    if raw is None:
        return pi
    if not isinstance(raw, dict):
        raise ValidationError("expected an object", "limits")
    for key in raw:
        if key not in LIMIT_KEYS:
            raise ValidationError(f"unknown limit (expected {', '.join(LIMIT_KEYS)})", f"limits.{key}")
    grid_hi = pi.grid_import_max_w if pi.grid_import_max_w is not None else math.inf
    values = {
        "max_charge_w": (0.0, pi.max_charge_w), "max_discharge_w": (0.0, pi.max_discharge_w),
        "soc_min_pct": (pi.soc_min_pct, pi.soc_max_pct), "soc_max_pct": (pi.soc_min_pct, pi.soc_max_pct),
        "grid_import_max_w": (0.0, grid_hi),
    }
    tightened = {key: modes.number(raw[key], f"limits.{key}", *values[key]) for key in raw}
    limits: L = dataclasses.replace(pi, **tightened)  # type: ignore[type-var]
    if limits.soc_min_pct > limits.soc_max_pct:
        raise ValidationError("soc_min_pct is above soc_max_pct", "limits.soc_min_pct")
    return limits


def _slot(raw: Any, i: int, start: datetime, limits: HardLimits,
          loads: Collection[str] | None) -> Slot:
    path = f"slots[{i}]"
    if not isinstance(raw, dict):
        raise ValidationError("expected an object", path)
    unknown = sorted(set(raw) - _SLOT_KEYS)
    if unknown:
        raise ValidationError(f"unknown field (expected {', '.join(sorted(_SLOT_KEYS))})",
                              f"{path}.{unknown[0]}")
    if _time(raw, "start", f"{path}.start") != start:
        raise ValidationError(f"expected {iso(start)} (slots are contiguous from valid_from)",
                              f"{path}.start")
    command = modes.check(raw, limits, path)
    switches = raw.get("loads", {})
    if not isinstance(switches, dict):
        raise ValidationError("expected an object of load name → true/false", f"{path}.loads")
    for name, on in switches.items():
        if loads is not None and name not in loads:
            known = ", ".join(sorted(loads)) or "none"
            raise ValidationError(f"unknown load (configured on the Pi: {known})",
                                  f"{path}.loads.{name}")
        if not isinstance(on, bool):
            raise ValidationError(f"expected true or false, got {on!r}", f"{path}.loads.{name}")
    return Slot(start=start, end=start + timedelta(seconds=SLOT_S), battery_mode=command.mode,
                power_w=command.power_w, soc_target=command.soc_target, loads=dict(switches),
                export_cap_w=command.export_cap_w)
