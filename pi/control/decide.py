"""The pure decision: (plan, now, telemetry, limits, state) → follow a slot or the safe state, and why.

No I/O and no clock: the executor feeds it and carries out what it says. Register values are
resolved from the decision by :func:`targets` with the profile and the commissioned baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from handshake.util.timeutil import iso
from pi.control.config import ControlConfig, Limits
from pi.control.plan import Plan, Slot

# SoC hysteresis (percentage points) so a battery at its target or floor doesn't flip modes
# (and write registers) every tick.
SOC_HYSTERESIS_PCT = 2.0
# Meters are noisy and inverters ramp: a power limit counts as hit only beyond this margin,
# on this many consecutive ticks.
LIMIT_MARGIN = 0.10
LIMIT_MARGIN_W = 200.0
LIMIT_STRIKES = 2

# Reason codes (control.json "reason").
FOLLOWING = "following"
NO_PLAN, PLAN_EXPIRED, PLAN_PENDING = "no_plan", "plan_expired", "plan_pending"
DEVICE_UNREACHABLE, DEVICE_ERROR = "device_unreachable", "device_error"
IMPLAUSIBLE = "implausible_telemetry"
VERIFY_FAILED, EXTERNAL_OVERRIDE, HARD_LIMIT = "verify_failed", "external_override", "hard_limit"
WRITE_BUDGET, NOT_COMMISSIONED = "write_budget", "not_commissioned"
WRONG_DEVICE = "wrong_device"  # the profile's probe: not the device it is for
STARTING, STOPPED = "starting", "stopped"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Read-back in edgepair's signs: battery_w + charging, grid_w + import."""

    soc_pct: float
    battery_w: float
    grid_w: float


@dataclass(frozen=True, slots=True)
class State:
    """What the decision remembers between ticks (the executor keeps it)."""

    plan_id: str | None = None
    battery_mode: str | None = None  # the effective mode last decided (for hysteresis)
    latch: str | None = None  # a reason that keeps the safe state until latch_until
    latch_detail: str = ""
    latch_until: datetime | None = None
    override_slot: datetime | None = None  # the slot in which an override was re-applied once
    strikes: int = 0  # consecutive ticks beyond a power limit


@dataclass(frozen=True, slots=True)
class Decision:
    follow: bool  # False: the safe state
    reason: str
    detail: str
    state: State
    slot: Slot | None = None
    battery_mode: str | None = None  # effective: a charge slot at its target holds
    values: Mapping[str, float | None] = field(default_factory=dict)
    loads: Mapping[str, str | None] = field(default_factory=dict)  # on | off | None (safe)


def decide(plan: Plan | None, now: datetime, telemetry: Telemetry | None, state: State,
           loads: tuple[str, ...] = (), fault: tuple[str, str] | None = None) -> Decision:
    """Follow the plan's slot only while everything is in order; otherwise the safe state.

    ``fault``: (reason, detail) when the telemetry could not be read or made no sense.
    """
    if plan is not None and state.plan_id != plan.id:
        state = State(plan_id=plan.id)  # a new plan is a fresh start: latches are cleared
    if fault is not None:
        return _safe(*fault, state)
    if plan is None:
        return _safe(NO_PLAN, "no plan has been received", state)
    slot = plan.slot_at(now)
    if slot is None:
        if now >= plan.valid_until:
            return _safe(PLAN_EXPIRED, f"plan {plan.id} expired at {iso(plan.valid_until)}", state)
        return _safe(PLAN_PENDING, f"plan {plan.id} starts at {iso(plan.valid_from)}", state)
    if telemetry is None:
        return _safe(DEVICE_UNREACHABLE, "no telemetry from the device", state)
    if state.latch is not None and state.latch_until is not None and now < state.latch_until:
        return _safe(state.latch, state.latch_detail, state)
    state = dataclasses.replace(state, latch=None, latch_detail="", latch_until=None)
    mode = _effective_mode(slot, telemetry.soc_pct, plan.limits, state.battery_mode)
    breach = _breach(telemetry, plan.limits, mode)
    state = dataclasses.replace(state, strikes=state.strikes + 1 if breach else 0)
    if breach and state.strikes >= LIMIT_STRIKES:
        return _safe(HARD_LIMIT, breach, latch(state, HARD_LIMIT, breach, slot.end))
    soc_target = min(slot.soc_target, plan.limits.soc_max_pct) if slot.soc_target is not None else None
    values = {"power_w": slot.power_w, "soc_target": soc_target, "export_cap_w": slot.export_cap_w}
    switches = {name: ("on" if slot.loads[name] else "off") if name in slot.loads else None
                for name in loads}
    detail = f"slot {iso(slot.start)} {slot.battery_mode}" + \
        (f" (holding: {_why_hold(slot, plan.limits)})" if mode != slot.battery_mode else "")
    return Decision(True, FOLLOWING, detail, dataclasses.replace(state, battery_mode=mode),
                    slot=slot, battery_mode=mode, values=values, loads=switches)


def latch(state: State, reason: str, detail: str, until: datetime) -> State:
    """Stay in the safe state for ``reason`` until ``until`` (normally the slot's end)."""
    return dataclasses.replace(state, latch=reason, latch_detail=detail, latch_until=until)


def on_override(state: State, decision: Decision, changed: list[str]) -> tuple[State, bool]:
    """A control register changed behind our back: re-apply once per slot, then the safe state.

    Returns the new state and whether to re-apply (False: latch safe until the slot ends).
    """
    slot = decision.slot
    if slot is None:
        return state, False
    if state.override_slot != slot.start:
        return dataclasses.replace(state, override_slot=slot.start), True
    detail = f"{', '.join(changed)} changed behind edgepair's back twice in slot {iso(slot.start)}"
    return latch(state, EXTERNAL_OVERRIDE, detail, slot.end), False


def targets(decision: Decision, config: ControlConfig,
            baselines: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Raw register values for the decision: ``name`` (inverter) and ``load.NAME.register``."""
    profile = config.profile
    mode = decision.battery_mode if decision.follow else None
    caps = {"max_charge_w": config.limits.max_charge_w,
            "max_discharge_w": config.limits.max_discharge_w}
    out = dict(profile.targets(mode, decision.values, baselines.get("inverter", {}), caps))
    for load in config.loads:
        switch = decision.loads.get(load.name) if decision.follow else None
        for name, raw in load.profile.targets(switch, {}, baselines.get(f"load.{load.name}", {})).items():
            out[f"load.{load.name}.{name}"] = raw
    return out


def _safe(reason: str, detail: str, state: State) -> Decision:
    return Decision(False, reason, detail, dataclasses.replace(state, battery_mode=None))


def _effective_mode(slot: Slot, soc: float, limits: Limits, previous: str | None) -> str:
    """A charge slot holds at its target, a discharge slot at its floor, a normal or
    limit_export slot at the SoC floor (with hysteresis); a discharge at 0 W rests as it is."""
    band = SOC_HYSTERESIS_PCT if previous == "hold" else 0.0
    mode = slot.battery_mode
    if mode == "charge":
        target = min(slot.soc_target or limits.soc_max_pct, limits.soc_max_pct)
        return "hold" if soc >= target - band else "charge"
    if mode == "discharge":
        if not slot.power_w:
            return mode
        return "hold" if soc <= _floor(slot, limits) + band else mode
    if mode in ("normal", "limit_export"):
        return "hold" if soc <= limits.soc_min_pct + band else mode
    return "hold"


def _floor(slot: Slot, limits: Limits) -> float:
    return max(slot.soc_target or limits.soc_min_pct, limits.soc_min_pct)


def _why_hold(slot: Slot, limits: Limits) -> str:
    if slot.battery_mode == "charge":
        return "SoC target reached"
    if slot.battery_mode == "discharge":
        return f"SoC at the slot's {_floor(slot, limits):g} % floor"
    return f"SoC at the {limits.soc_min_pct:g} % floor"


def _breach(t: Telemetry, limits: Limits, mode: str) -> str:
    """A description of the hard limit the device is beyond, or ''."""
    if t.battery_w > limits.max_charge_w * (1 + LIMIT_MARGIN) + LIMIT_MARGIN_W:
        return f"charging at {t.battery_w:.0f} W, above the {limits.max_charge_w:.0f} W limit"
    if -t.battery_w > limits.max_discharge_w * (1 + LIMIT_MARGIN) + LIMIT_MARGIN_W:
        return f"discharging at {-t.battery_w:.0f} W, above the {limits.max_discharge_w:.0f} W limit"
    cap = limits.grid_import_max_w
    if mode == "charge" and cap is not None and t.grid_w > cap * (1 + LIMIT_MARGIN) + LIMIT_MARGIN_W:
        return f"grid import {t.grid_w:.0f} W while charging, above the {cap:.0f} W limit"
    return ""
