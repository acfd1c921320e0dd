#!/usr/bin/env python3
"""Benchmark the planner's dynamic program: time for a 96-slot day and the gap to an LP optimum.

The day is the planner tests' winter day (a morning and an evening peak, prices 0.1-0.4
EUR/kWh, little PV) on a 10 kWh battery; the LP is the same model solved continuously by
scipy's HiGHS (a test dependency). Also timed: a 48 h horizon (192 slots) and a sunny day.

    .venv/bin/python scripts/bench/planner_dp.py [--runs 10] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from _common import Target, emit_json, machine, machine_line

from host.planner import dp
from tests.test_planner_dp import BATTERY, lp_optimum, winter_day

TARGET_S = 1.0
TARGET_GAP_PCT = 0.5
QUICK_RUNS = 3


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
    targets = [Target("solve time, 96 slots (median)", result["day"]["solve_s"]["median"], TARGET_S,
                      "s", strict=True),
               Target("DP optimum − LP optimum", result["day"]["gap_pct"], TARGET_GAP_PCT, "%"),
               Target("the plan as executed − LP optimum", result["day"]["plan_gap_pct"],
                      TARGET_GAP_PCT, "%"),
               Target("solve time, 96 slots with negative prices (median)",
                      result["negative_prices"]["solve_s"]["median"], TARGET_S, "s", strict=True)]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


def problem(slots: int, sunny: bool = False, step: float | None = None,
            negative: bool = False) -> dp.Problem:
    price, pv, load = winter_day(1, slots=96)
    price, pv, load = (price * 2)[:slots], (pv * 2)[:slots], (load * 2)[:slots]
    if sunny:
        pv = [w * 8 for w in pv]
    if negative:  # a sunny, windy noon: import is paid for (the DP's non-convex path)
        price = [-0.05 if 40 <= t % 96 < 60 else x for t, x in enumerate(price)]
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


def case(p: dp.Problem, runs: int, lp: bool = True) -> dict[str, Any]:
    """Solve time and cost; against the LP unless ``lp`` is False (the LP, with separate
    import and export, is unbounded when import is paid for: buy and sell at once)."""
    solution, times = timed(p, runs)
    optimum = lp_optimum(p) if lp else solution.cost
    plan = dp.modes(p, solution)
    planned = dp.net_cost(p, dp.execute(p, plan))
    baseline = dp.net_cost(p, dp.self_consumption(p))
    n, _, _ = dp.levels(p)
    return {"slots": p.slots, "soc_levels": n + 1, "soc_step_pct": p.soc_step_pct,
            "solve_s": times, "dp_eur": round(solution.cost, 4), "lp_eur": round(optimum, 4),
            "gap_pct": round((solution.cost - optimum) / abs(optimum) * 100, 3),
            "plan_eur": round(planned, 4),
            "plan_gap_pct": round((planned - optimum) / abs(optimum) * 100, 3),
            "baseline_eur": round(baseline, 4),
            "modes": {m: sum(1 for x in plan if x[0] == m) for m in ("charge", "hold", "normal")}}


def bench(runs: int) -> dict[str, Any]:
    return {"bench": "planner_dp", "machine": machine(),
            "day": case(problem(96), runs),
            "coarse_day": case(problem(96, step=0.1), runs),
            "two_days": case(problem(192), max(1, runs // 2)),
            "sunny_day": case(problem(96, sunny=True), runs),
            "negative_prices": case(problem(96, sunny=True, negative=True), runs, lp=False)}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    print("planner DP (host.planner.dp.solve): 10 kWh battery, 3 kW each way, 90 % round trip")
    for key, label in (("day", "winter day"), ("coarse_day", "winter day, 0.1 % SoC steps"),
                       ("two_days", "48 h horizon"), ("sunny_day", "sunny day"),
                       ("negative_prices", "sunny day, negative noon")):
        c = r[key]
        t = c["solve_s"]
        print(f"  {label:28} {c['slots']} slots × {c['soc_levels']} SoC levels: solve median "
              f"{t['median'] * 1000:.0f} ms (min {t['min'] * 1000:.0f}, max {t['max'] * 1000:.0f}, "
              f"{t['runs']} runs)")
        lp = f"LP {c['lp_eur']:.4f} EUR (gap {c['gap_pct']:.3f} %)" if key != "negative_prices" \
            else "no LP (unbounded with paid import)"
        print(f"  {'':28} DP {c['dp_eur']:.4f} EUR, {lp};"
              f" the plan as executed {c['plan_eur']:.4f} EUR (gap {c['plan_gap_pct']:.3f} %); doing "
              f"nothing {c['baseline_eur']:.4f} EUR; modes {c['modes']}")
    print(machine_line(r["machine"]) + " (2 shared cores: timings are noisy)")
    for target in targets:
        print("  " + target.line())


if __name__ == "__main__":
    sys.exit(main())
