"""``energy.json`` (``edgepair.energy/1``), built from the energy history: today per
15-minute slot (planned vs actual, cost, baseline, saving), 30 days of totals, and the plan
in force's forecast saving against what it has realised so far. Pure over the history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from handshake.util.timeutil import iso
from pi.control import audit
from pi.control.audit import SlotPlan
from pi.control.history import SLOT_S, EnergyHistory, day_range, mode_name

SCHEMA = "edgepair.energy/1"
DAYS = 30
_KWH = 3_600_000.0  # J per kWh


def _kwh(j: float | None) -> float | None:
    return None if j is None else round(j / _KWH, 4)


def _eur(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def build(history: EnergyHistory, now: float, interval_s: float | None) -> dict[str, Any]:
    calendar = history.calendar
    today = calendar.day(now)
    first, end = day_range(calendar, today)
    minutes = history.minutes(first // 60, end // 60)
    rows = {row["start"]: row for row in history.slots(first, end)}
    by_slot: dict[int, list[tuple[int, ...]]] = {}
    for m in minutes:
        by_slot.setdefault(m[0] * 60 // SLOT_S * SLOT_S, []).append(m)
    slots = []
    for start in range(first // SLOT_S * SLOT_S, end, SLOT_S):
        if start < first or start > now:
            continue
        slots.append(_slot(history, start, rows.get(start), by_slot.get(start, []), now))
    days = [_day(row) for row in history.days(today - timedelta(days=DAYS - 1), today)]
    plan_id = history.latest_plan_id()
    plan = history.plan(plan_id) if plan_id is not None else None
    if plan is not None:
        plan = {**plan, "valid_from": iso(plan["valid_from"]), "valid_until": iso(plan["valid_until"]),
                "forecast_saving_eur": _eur(plan["forecast_saving_eur"]),
                "realised_saving_eur": _eur(plan["realised_saving_eur"])}
    return {"schema": SCHEMA, "generated_at": iso(now), "interval_s": interval_s,
            "slot_s": SLOT_S, "today": {"date": today.isoformat(), "slots": slots,
                                        "totals": _totals(slots)},
            "days": days, "plan": plan}


def _slot(history: EnergyHistory, start: int, row: dict[str, Any] | None,
          minutes: list[tuple[int, ...]], now: float) -> dict[str, Any]:
    dt = sum(m[1] for m in minutes) / 1000
    imp, exp, chg, dis, pv, load = (sum(m[i] for m in minutes) for i in range(2, 8))
    soc = next((m[8] / 10 for m in reversed(minutes) if m[8] is not None), None)
    out: dict[str, Any] = {
        "start": iso(start), "covered_s": round(dt, 1), "complete": start + SLOT_S <= now,
        "actual": {"import_kwh": _kwh(imp), "export_kwh": _kwh(exp), "charge_kwh": _kwh(chg),
                   "discharge_kwh": _kwh(dis), "pv_kwh": _kwh(pv), "load_kwh": _kwh(load),
                   "soc_pct": soc, "mode": mode_name(minutes[-1][9]) if minutes else None,
                   "override": bool(minutes[-1][9] & 16) if minutes else False,
                   "writes": sum(m[10] for m in minutes)},
        "planned": None, "cost_eur": None, "baseline_cost_eur": None, "saving_eur": None}
    if row is None:
        return out
    out["planned"] = {"plan_id": row["plan_id"], "battery_mode": row["mode"],
                      "power_w": row["power_w"], "soc_target": row["soc_target"],
                      "import_eur_kwh": row["import_eur_kwh"], "export_eur_kwh": row["export_eur_kwh"],
                      "pv_w": row["forecast_pv_w"], "load_w": row["forecast_load_w"],
                      "battery_w": row["forecast_battery_w"], "grid_w": row["forecast_grid_w"],
                      "soc_pct": row["forecast_soc_pct"]}
    if row["audited"]:
        result = audit.SlotAudit(row["cost"], row["base_cost"], row["base_import_j"],
                                 row["base_export_j"], row["base_end_wh"], row["saving"])
    else:  # the slot still running: audited so far
        plan = SlotPlan(**{k: row[k] for k in SlotPlan.__dataclass_fields__})
        result, _ = history.audit_slot(plan)
    out.update(cost_eur=_eur(result.cost_eur), baseline_cost_eur=_eur(result.baseline_cost_eur),
               saving_eur=_eur(result.saving_eur))
    return out


def _totals(slots: list[dict[str, Any]]) -> dict[str, Any]:
    def total(key: str) -> float:
        return round(sum(s["actual"][key] or 0.0 for s in slots), 4)

    def money(key: str) -> float | None:
        values = [s[key] for s in slots if s[key] is not None]
        return round(sum(values), 4) if values else None

    load, imp = total("load_kwh"), total("import_kwh")
    return {"import_kwh": imp, "export_kwh": total("export_kwh"), "pv_kwh": total("pv_kwh"),
            "load_kwh": load, "charge_kwh": total("charge_kwh"),
            "discharge_kwh": total("discharge_kwh"), "cost_eur": money("cost_eur"),
            "baseline_cost_eur": money("baseline_cost_eur"), "saving_eur": money("saving_eur"),
            "self_sufficiency": _self_sufficiency(imp, load)}


def _self_sufficiency(import_kwh: float, load_kwh: float) -> float | None:
    return None if load_kwh <= 0 else round(max(0.0, 1 - import_kwh / load_kwh), 4)


def _day(row: tuple[Any, ...]) -> dict[str, Any]:
    day, dt, imp, exp, chg, dis, pv, load, writes, slots, cost, base_cost, saving = row
    load_kwh, imp_kwh = _kwh(load) or 0.0, _kwh(imp) or 0.0
    return {"date": day, "covered_s": round(dt / 1000), "import_kwh": imp_kwh,
            "export_kwh": _kwh(exp), "charge_kwh": _kwh(chg), "discharge_kwh": _kwh(dis),
            "pv_kwh": _kwh(pv), "load_kwh": load_kwh, "writes": writes, "audited_slots": slots,
            "cost_eur": _eur(cost), "baseline_cost_eur": _eur(base_cost),
            "saving_eur": _eur(saving), "self_sufficiency": _self_sufficiency(imp_kwh, load_kwh)}

