"""The 15-minute energy audit (pure: no I/O, no clock): what a slot cost, what doing nothing
would have cost over the same measured load and PV, and so the saving the plan realised.

Per slot: the measured grid import and export (integrated separately, as a meter bills),
priced at the plan's ``forecast`` prices (the prices in force); the no-plan baseline is the
inverter's own self-consumption simulated on the slot's measured PV and load, with the
battery model the planner used (``optimizer.battery``), as the planner's ``check`` simulated
it on the forecast. Energy in the battery is worth ``stored_value_eur_kwh`` (the planner's
terminal price), so

    saving = (baseline cost − cost) + value × η × Δ(stored energy − baseline stored energy)

which adds up over a plan's slots to the planner's ``savings_eur`` when what happened is
what was forecast. The baseline carries on from slot to slot within one plan and starts
from the measured SoC when a plan starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

J_PER_WH = 3600.0


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """What was in force for a slot: the plan's command, prices, forecast, battery model."""

    start: int  # Unix seconds
    plan_id: str
    mode: str
    power_w: float | None = None
    soc_target: float | None = None
    import_eur_kwh: float | None = None
    export_eur_kwh: float | None = None
    forecast_pv_w: float | None = None
    forecast_load_w: float | None = None
    forecast_battery_w: float | None = None
    forecast_grid_w: float | None = None
    forecast_soc_pct: float | None = None
    capacity_wh: float | None = None
    round_trip_efficiency: float | None = None
    stored_value_eur_kwh: float | None = None
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    max_charge_w: float = math.inf
    max_discharge_w: float = math.inf

    @property
    def priced(self) -> bool:
        return self.import_eur_kwh is not None and self.export_eur_kwh is not None


@dataclass(frozen=True, slots=True)
class Measured:
    """A slot's measurements: energies in J (W·s), ``dt_s`` the time the samples cover."""

    dt_s: float
    import_j: float
    export_j: float
    pv_j: float
    load_j: float
    soc_start: float | None
    soc_end: float | None


@dataclass(frozen=True, slots=True)
class SlotAudit:
    cost_eur: float | None
    baseline_cost_eur: float | None
    baseline_import_j: float | None
    baseline_export_j: float | None
    baseline_end_wh: float | None  # the baseline's stored energy at the slot's end
    saving_eur: float | None


def cost(plan: SlotPlan, import_j: float, export_j: float) -> float | None:
    """What the meter bills at the slot's prices (EUR); None without prices."""
    if plan.import_eur_kwh is None or plan.export_eur_kwh is None:
        return None
    return (import_j * plan.import_eur_kwh - export_j * plan.export_eur_kwh) / J_PER_WH / 1000


def audit(plan: SlotPlan, m: Measured, baseline_start_wh: float | None) -> SlotAudit:
    """One slot; ``baseline_start_wh``: the baseline's stored energy carried on from the
    plan's previous slot (None: the plan starts here, from the measured SoC)."""
    actual = cost(plan, m.import_j, m.export_j)
    cap, rte = plan.capacity_wh, plan.round_trip_efficiency
    if actual is None or cap is None or rte is None or m.soc_start is None or m.soc_end is None \
            or cap <= 0 or not 0 < rte <= 1:
        return SlotAudit(actual, None, None, None, None, None)
    eta = math.sqrt(rte)
    stored_start = cap * m.soc_start / 100
    e0 = stored_start if baseline_start_wh is None else baseline_start_wh
    hours = m.dt_s / 3600
    load_wh, pv_wh = m.load_j / J_PER_WH, m.pv_j / J_PER_WH
    ac, e1 = self_consumption(plan, e0, pv_wh - load_wh, hours, eta)
    grid_wh = load_wh - pv_wh + ac
    base_import, base_export = max(grid_wh, 0.0) * J_PER_WH, max(-grid_wh, 0.0) * J_PER_WH
    baseline = cost(plan, base_import, base_export)
    assert baseline is not None
    value = max(plan.stored_value_eur_kwh or 0.0, 0.0)
    gap_change = (cap * m.soc_end / 100 - e1) - (stored_start - e0)
    saving = baseline - actual + value * eta * gap_change / 1000
    return SlotAudit(actual, baseline, base_import, base_export, e1, saving)


def self_consumption(plan: SlotPlan, e: float, surplus_wh: float, hours: float,
                     eta: float) -> tuple[float, float]:
    """(AC Wh into the battery, stored Wh after): PV surplus in, the deficit out, in limits."""
    assert plan.capacity_wh is not None
    e_lo, e_hi = plan.capacity_wh * plan.soc_min_pct / 100, plan.capacity_wh * plan.soc_max_pct / 100
    up, down = max((e_hi - e) / eta, 0.0), max((e - e_lo) * eta, 0.0)
    ac = min(max(surplus_wh, -plan.max_discharge_w * hours), plan.max_charge_w * hours)
    ac = min(ac, up) if ac > 0 else max(ac, -down)
    return ac, e + (ac * eta if ac > 0 else ac / eta)
