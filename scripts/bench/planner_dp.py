#!/usr/bin/env python3
"""Benchmark the planner's dynamic program: solve time, the gap to an LP optimum, and the plan
as the Pi carries it out against the DP's optimum and against doing nothing.

The day is the planner tests' winter day (a morning and an evening peak, prices 0.1-0.4
EUR/kWh, little PV) on a 10 kWh battery; the LP is the same model solved continuously by
scipy's HiGHS (a test dependency). Also: a 48 h horizon (192 slots), a sunny day, and the
negative-price and export-cap days of tests/test_planner_dp.py (``case``): negative import
noon, negative export noon, export cap 0 while prices are negative, an export cap of 60 % of
the PV peak all day, and 48 h with negative prices. Every case at the default SoC resolution
(0.01 %); each must solve in < 1 s (median) and be carried out within 1 % of the DP optimum,
never worse than doing nothing.

    .venv/bin/python scripts/bench/planner_dp.py [--runs 10] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from _common import Target, emit_json, machine, machine_line

from handshake.modes import BATTERY_MODES
from host.planner import dp
from tests.test_planner_dp import BATTERY, CASES, case, lp_optimum, winter_day

TARGET_S = 1.0
TARGET_GAP_PCT = 0.5
TARGET_CARRIED_OUT_PCT = 1.0
QUICK_RUNS = 3
LABELS = {"day": "winter day", "coarse_day": "winter day, 0.1 % SoC steps",
          "two_days": "48 h horizon", "sunny_day": "sunny day",
          "negative_import_noon": "sunny day, negative import noon",
          "negative_export_noon": "sunny day, negative export noon",
          "export_cap_0_negative": "export cap 0 while negative",
          "export_cap_60_pct": "export cap 60 % of PV peak",
          "two_days_negative": "48 h, negative prices"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed solves per case (default 10)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs per case")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    runs = QUICK_RUNS if args.quick else args.runs
    if not 1 <= runs <= 100:
        parser.error("--runs must be in 1…100")
    result = bench(runs)
    targets = [Target("DP optimum − LP optimum", result["day"]["lp_gap_pct"], TARGET_GAP_PCT, "%"),
               Target("the plan as carried out − LP optimum", result["day"]["plan_lp_gap_pct"],
                      TARGET_GAP_PCT, "%")]
    for key, c in result["cases"].items():
        targets += [Target(f"{key}: solve time (median)", c["solve_s"]["median"], TARGET_S, "s",
                           strict=True),
                    Target(f"{key}: carried out − DP optimum", c["plan_gap_pct"],
                           TARGET_CARRIED_OUT_PCT, "%"),
                    Target(f"{key}: carried out − doing nothing",
                           round(c["plan_eur"] - c["baseline_eur"], 4),
                           0.0, "EUR")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


def problem(slots: int, sunny: bool = False, step: float | None = None) -> dp.Problem:
    price, pv, load = winter_day(1, slots=96)
    price, pv, load = (price * 2)[:slots], (pv * 2)[:slots], (load * 2)[:slots]
    if sunny:
        pv = [w * 8 for w in pv]
    kw: dict[str, Any] = {} if step is None else {"soc_step_pct": step}
    return dp.Problem(price=price, export_price=[0.08] * slots, pv_w=pv, load_w=load,
                      battery=BATTERY, soc0_pct=50, **kw)


def timed(p: dp.Problem, runs: int) -> tuple[dp.Solution, dict[str, float]]:
    times = []
    solution = dp.solve(p)
    for _ in range(runs):
        start = time.perf_counter()
        solution = dp.solve(p)
        times.append(time.perf_counter() - start)
    return solution, {"median": round(statistics.median(times), 4), "min": round(min(times), 4),
                      "max": round(max(times), 4), "runs": runs}


def measure(p: dp.Problem, runs: int, lp: bool = False) -> dict[str, Any]:
    """Solve time; the DP optimum, the plan as carried out and doing nothing (net EUR); the
    LP optimum when ``lp`` (the LP, with separate import and export and no curtailment, is
    not the same model on the negative-price and capped days)."""
    solution, times = timed(p, runs)
    plan = dp.modes(p, solution)
    planned = dp.net_cost(p, dp.execute(p, plan))
    baseline = dp.net_cost(p, dp.execute(p, dp.self_consumption(p)))
    n, _, _ = dp.levels(p)
    out = {"slots": p.slots, "soc_levels": n + 1, "soc_step_pct": p.soc_step_pct,
           "solve_s": times, "dp_eur": round(solution.cost, 4), "plan_eur": round(planned, 4),
           "plan_gap_pct": round((planned - solution.cost) / abs(solution.cost) * 100, 3),
           "baseline_eur": round(baseline, 4),
           "modes": {m: sum(1 for c in plan if c.mode == m) for m in BATTERY_MODES
                     if any(c.mode == m for c in plan)},
           "capped_slots": sum(1 for c in plan if c.export_cap_w is not None)}
    if lp:
        optimum = lp_optimum(p)
        out |= {"lp_eur": round(optimum, 4),
                "lp_gap_pct": round((solution.cost - optimum) / abs(optimum) * 100, 3),
                "plan_lp_gap_pct": round((planned - optimum) / abs(optimum) * 100, 3)}
    return out


def bench(runs: int) -> dict[str, Any]:
    cases = {"day": measure(problem(96), runs, lp=True),
             "coarse_day": measure(problem(96, step=0.1), runs, lp=True),
             "two_days": measure(problem(192), max(1, runs // 2), lp=True),
             "sunny_day": measure(problem(96, sunny=True), runs, lp=True)}
    for name in CASES:
        cases[name] = measure(case(name), max(1, runs // 2) if name.startswith("two") else runs)
    return {"bench": "planner_dp", "machine": machine(), "day": cases["day"], "cases": cases}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    print("planner DP (host.planner.dp.solve): 10 kWh battery, 3 kW each way, 90 % round trip; "
          "net EUR (the bill less the energy left, at the horizon's lowest price)")
    for key, c in r["cases"].items():
        t = c["solve_s"]
        print(f"  {LABELS[key]:32} {c['slots']} slots × {c['soc_levels']} SoC levels: solve median "
              f"{t['median'] * 1000:.0f} ms (min {t['min'] * 1000:.0f}, max {t['max'] * 1000:.0f}, "
              f"{t['runs']} runs)")
        lp = f", LP {c['lp_eur']:.4f} (DP gap {c['lp_gap_pct']:.3f} %)" if "lp_eur" in c else ""
        print(f"  {'':32} DP optimum {c['dp_eur']:.4f}{lp}; carried out {c['plan_eur']:.4f} "
              f"({c['plan_gap_pct']:+.3f} %); doing nothing {c['baseline_eur']:.4f}; "
              f"modes {c['modes']}, {c['capped_slots']} slots export-capped")
    print(machine_line(r["machine"]) + " (2 shared cores: timings are noisy)")
    for target in targets:
        print("  " + target.line())


if __name__ == "__main__":
    sys.exit(main())
