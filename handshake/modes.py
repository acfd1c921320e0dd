"""The battery modes the Pi carries out, with their parameters: one vocabulary for the host's
planner, the plan contract (``edgepair.plan/1`` slots), the Pi's executor and its profiles,
and a manual override.

- ``normal``: self-consumption (PV surplus into the battery, the deficit out of it);
  ``power_w`` optional: a discharge cap.
- ``hold``: the battery keeps its charge (no discharge; PV surplus may charge it).
- ``charge``: the battery charges at ``power_w`` (required), PV first and the grid for the
  rest (also while PV covers the load: when import is paid for), until ``soc_target``
  (required).
- ``discharge``: the battery discharges at ``power_w`` (required), the load first and the
  rest into the grid, down to ``soc_target`` (optional: the Pi's floor); 0 W rests the
  battery (PV surplus then goes to the grid, not into it).
- ``limit_export``: self-consumption with the feed-in capped at ``export_cap_w``
  (required); ``power_w`` optional: a discharge cap.

``export_cap_w``: the grid feed-in (W) the inverter keeps below by curtailing PV (0: none).
It goes with every mode but ``normal``, whose capped form is ``limit_export``: one spelling
for each behaviour. Plans of the first vocabulary (normal, hold, charge) read as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from handshake.errors import ValidationError

NORMAL, HOLD, CHARGE, DISCHARGE, LIMIT_EXPORT = "normal", "hold", "charge", "discharge", "limit_export"
BATTERY_MODES = (NORMAL, HOLD, CHARGE, DISCHARGE, LIMIT_EXPORT)
# A feed-in cap above this is no cap a household inverter could mean.
MAX_EXPORT_CAP_W = 1_000_000.0

Need = Literal["required", "optional", "never"]


class HardLimits(Protocol):
    """What a mode's parameters are checked against (the Pi's [control] limits, or a plan's)."""

    @property
    def max_charge_w(self) -> float: ...
    @property
    def max_discharge_w(self) -> float: ...
    @property
    def soc_min_pct(self) -> float: ...
    @property
    def soc_max_pct(self) -> float: ...
    @property
    def grid_import_max_w(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ModeSpec:
    """Which parameters a mode takes, and which hard limit bounds its power."""

    power: Need
    power_limit: Literal["max_charge_w", "max_discharge_w"] | None  # None: power_w must be 0
    soc_target: Need
    export_cap: Need


SPECS: Mapping[str, ModeSpec] = {
    NORMAL: ModeSpec("optional", "max_discharge_w", "optional", "never"),
    HOLD: ModeSpec("optional", None, "optional", "optional"),
    CHARGE: ModeSpec("required", "max_charge_w", "required", "optional"),
    DISCHARGE: ModeSpec("required", "max_discharge_w", "optional", "optional"),
    LIMIT_EXPORT: ModeSpec("optional", "max_discharge_w", "optional", "required"),
}


@dataclass(frozen=True, slots=True)
class Command:
    """One mode with its parameters, checked (``check``)."""

    mode: str
    power_w: float | None = None
    soc_target: float | None = None
    export_cap_w: float | None = None

    def values(self) -> dict[str, float | None]:
        """The parameters by name, as profiles read them (``from = "power_w"`` …)."""
        return {"power_w": self.power_w, "soc_target": self.soc_target,
                "export_cap_w": self.export_cap_w}


def check(raw: Mapping[str, Any], limits: HardLimits, path: str = "") -> Command:
    """``battery_mode`` and its parameters from a JSON object; ValidationError names the field."""
    at = f"{path}." if path else ""
    mode = raw.get("battery_mode")
    if not isinstance(mode, str) or mode not in SPECS:
        raise ValidationError(f"expected one of {', '.join(BATTERY_MODES)}, got {mode!r}",
                              f"{at}battery_mode")
    spec = SPECS[mode]
    hi = 0.0 if spec.power_limit is None else getattr(limits, spec.power_limit)
    power = _param(raw, "power_w", spec.power, mode, at, 0.0, hi)
    soc = _param(raw, "soc_target", spec.soc_target, mode, at, limits.soc_min_pct, limits.soc_max_pct)
    cap = _param(raw, "export_cap_w", spec.export_cap, mode, at, 0.0, MAX_EXPORT_CAP_W)
    return Command(mode, power, soc, cap)


def number(value: Any, path: str, lo: float, hi: float) -> float:
    """A finite number within [lo, hi] (the hard limits); ValidationError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"expected a number, got {value!r}", path)
    if not lo <= value <= hi:
        raise ValidationError(f"expected {lo:g} ≤ value ≤ {hi:g} (the Pi's hard limits), "
                              f"got {value:g}", path)
    return float(value)


def _param(raw: Mapping[str, Any], key: str, need: Need, mode: str, at: str,
           lo: float, hi: float) -> float | None:
    value = raw.get(key)
    if value is None:
        if need == "required":
            raise ValidationError(f"required for a {mode} slot", f"{at}{key}")
        return None
    if need == "never":
        other = " (a capped normal slot is limit_export)" if key == "export_cap_w" else ""
        raise ValidationError(f"not allowed in a {mode} slot{other}", f"{at}{key}")
    return number(value, f"{at}{key}", lo, hi)
