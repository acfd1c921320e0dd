"""The planner's dynamic program: equal to brute force, close to an LP optimum, inside every limit."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linprog

from host.planner import dp
from host.planner.config import BatteryModel

BATTERY = BatteryModel(capacity_wh=10_000, soc_min_pct=10, soc_max_pct=95, max_charge_w=3000,
                       max_discharge_w=3000, round_trip_efficiency=0.9)


def winter_day(seed: int = 1, slots: int = 96) -> tuple[list[float], list[float], list[float]]:
    """Prices (EUR/kWh), PV and load (W) of a dull winter day with a morning and evening peak."""
    rng = random.Random(seed)
    price = [0.25 + 0.12 * math.sin(2 * math.pi * (t / 96 - 0.3)) + 0.05 * math.sin(2 * math.pi * t / 24)
             + rng.uniform(-0.02, 0.02) for t in range(slots)]
    pv = [max(0.0, 600 * math.sin(math.pi * (t / 4 - 7) / 10)) if 7 < t / 4 < 17 else 0.0
          for t in range(slots)]
    load = [450 + 900 * math.exp(-((t / 4 - 19) ** 2) / 4) + 300 * math.exp(-((t / 4 - 7.5) ** 2) / 2)
            for t in range(slots)]
    return price, pv, load


def lp_optimum(p: dp.Problem) -> float:
    """The continuous optimum of the same model (HiGHS), with the same worth of leftover energy."""
    t_n, hours = p.slots, p.slot_s / 3600
    b, eta = p.battery, math.sqrt(p.battery.round_trip_efficiency)
    c, d, imp, exp, e = (lambda t, k=k: k * t_n + t for k in range(5))  # variable indices
    n_vars = 5 * t_n + 1
    cost = np.zeros(n_vars)
    cost[e(t_n)] = -dp.terminal_price(p) * eta / 1000
    rows, rhs = [], []
    for t in range(t_n):
        cost[imp(t)], cost[exp(t)] = p.price[t] / 1000, -p.export_price[t] / 1000
        row = np.zeros(n_vars)
        row[[e(t + 1), e(t), c(t), d(t)]] = [1, -1, -eta, 1 / eta]
        rows.append(row)
        rhs.append(0.0)
        row = np.zeros(n_vars)
        row[[imp(t), exp(t), c(t), d(t)]] = [1, -1, -1, 1]
        rows.append(row)
        rhs.append((p.load_w[t] - p.pv_w[t]) * hours)
    e0 = b.capacity_wh * p.soc0_pct / 100
    bounds = ([(0, b.max_charge_w * hours)] * t_n + [(0, b.max_discharge_w * hours)] * t_n
              + [(0, None)] * (2 * t_n) + [(e0, e0)]
              + [(b.capacity_wh * b.soc_min_pct / 100, b.capacity_wh * b.soc_max_pct / 100)] * t_n)
    result = linprog(cost, A_eq=np.array(rows), b_eq=np.array(rhs), bounds=bounds, method="highs")
    assert result.status == 0, result.message
    return float(result.fun)


def brute_force(p: dp.Problem) -> float:
    n, e_min, step = dp.levels(p)
    terminal = dp.terminal_values(p, n, e_min, step)
    # A start outside the SoC limits is snapped onto the grid, as the DP does.
    start = min(max(round((p.battery.capacity_wh * p.soc0_pct / 100 - e_min) / step), 0), n)
    best = math.inf
    for path in itertools.product(range(n + 1), repeat=p.slots):
        total, level = 0.0, start
        for t, nxt in enumerate(path):
            total += dp.stage_cost(p, t, dp.battery_ac(p, (nxt - level) * step))
            level = nxt
        best = min(best, total + terminal[level])
    return best


def small(seed: int) -> dp.Problem:
    rng = random.Random(seed)
    inverted = seed % 3 == 0  # negative prices, or export paying more than import: not convex
    return dp.Problem(
        price=[rng.uniform(-0.1 if inverted else 0.05, 0.4) for _ in range(4)],
        export_price=[rng.uniform(0.0, 0.3 if inverted else 0.05) for _ in range(4)],
        pv_w=[rng.uniform(0, 3000) for _ in range(4)], load_w=[rng.uniform(100, 2000) for _ in range(4)],
        battery=BatteryModel(capacity_wh=5000, soc_min_pct=10, soc_max_pct=90,
                             max_charge_w=rng.choice([1500, 3000, 8000]),
                             max_discharge_w=rng.choice([1500, 3000, 8000]), round_trip_efficiency=0.85),
        soc0_pct=rng.choice([5, 10, 30, 50, 90, 97]), soc_step_pct=10,
        grid_import_max_w=rng.choice([None, 1500, 4000]))


@pytest.mark.parametrize("seed", range(24))
def test_equal_to_brute_force_on_small_horizons(seed: int) -> None:
    p = small(seed)
    assert dp.solve(p).cost == pytest.approx(brute_force(p), abs=1e-9)


def test_the_fast_stage_costs_are_the_stage_costs() -> None:
    p = small(4)
    n, _, step = dp.levels(p)
    for t in range(p.slots):
        k_lo, costs = dp._stage(p, t, n, step)
        for j, cost in enumerate(costs):
            assert cost == pytest.approx(dp.stage_cost(p, t, dp.battery_ac(p, (k_lo + j) * step)))


def full_convolution(after: Any, k_lo: int, cs: list[float], n: int) -> list[float]:
    """min over k of cs[k - k_lo] + after[i + k], by definition: the oracle, O(N × K)."""
    return [min((c + after[i + k_lo + j] for j, c in enumerate(cs) if 0 <= i + k_lo + j <= n),
                default=math.inf) for i in range(n + 1)]


def test_the_slope_merge_equals_the_full_convolution() -> None:
    rng = random.Random(7)
    after = dp.array("d", itertools.accumulate(sorted(rng.uniform(-1, 1) for _ in range(40))))
    costs = list(itertools.accumulate(sorted(rng.uniform(-1, 1) for _ in range(9))))
    fast = dp._convolve_convex(after, -4, costs, 39)
    assert len(fast) == 40
    assert list(fast) == pytest.approx(full_convolution(after, -4, costs, 39))
    assert list(dp._convolve(after, -4, costs, 39)) == pytest.approx(list(fast))


@pytest.mark.parametrize("seed", range(20))
def test_the_sliding_windows_equal_the_full_convolution_without_convexity(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    after = dp.array("d", (rng.uniform(-2, 2) for _ in range(n + 1)))  # any shape at all
    # A stage cost as _stage makes it: linear runs with kinks (negative or inverted prices).
    k_lo = -rng.randint(0, 8)
    kinks = sorted(rng.sample(range(1, 20), 2))
    slopes = [rng.uniform(-1, 1) for _ in range(3)]
    cs, c = [], rng.uniform(-1, 1)
    for j in range(rng.randint(1, 20)):
        cs.append(c)
        c += slopes[sum(j >= k for k in kinks)]
    assert list(dp._convolve(after, k_lo, cs, n)) == pytest.approx(
        full_convolution(after, k_lo, cs, n), abs=1e-12)


def test_within_half_a_percent_of_the_lp_optimum_on_a_96_slot_day() -> None:
    price, pv, load = winter_day()
    p = dp.Problem(price=price, export_price=[0.08] * 96, pv_w=pv, load_w=load, battery=BATTERY,
                   soc0_pct=50)
    optimum = lp_optimum(p)
    solution = dp.solve(p)
    assert optimum - 1e-6 <= solution.cost <= optimum + 0.005 * abs(optimum)
    planned = dp.net_cost(p, dp.execute(p, dp.modes(p, solution)))  # what the Pi will do with it
    assert planned <= optimum + 0.005 * abs(optimum)
    assert planned < dp.net_cost(p, dp.self_consumption(p)) * 0.6  # and it pays off


def assert_within_limits(p: dp.Problem, soc: Sequence[float], battery_w: Sequence[float]) -> None:
    b = p.battery
    for value in soc[1:]:
        assert b.soc_min_pct - 1e-6 <= value <= b.soc_max_pct + 1e-6
    for t, w in enumerate(battery_w):
        assert -b.max_discharge_w - 1e-6 <= w <= b.max_charge_w + 1e-6
        grid = p.load_w[t] - p.pv_w[t] + w
        cap = p.grid_import_max_w
        if cap is not None and w > 0:
            assert grid <= max(cap, p.load_w[t] - p.pv_w[t]) + 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_limits_are_always_respected(seed: int) -> None:
    rng = random.Random(seed)
    price, pv, load = winter_day(seed, slots=48)
    battery = BatteryModel(capacity_wh=rng.choice([5000, 13_500]), soc_min_pct=rng.choice([5, 20]),
                           soc_max_pct=rng.choice([80, 100]), max_charge_w=rng.choice([1000, 4000]),
                           max_discharge_w=rng.choice([800, 5000]), round_trip_efficiency=0.88)
    p = dp.Problem(price=price, export_price=[0.05] * 48, pv_w=[w * 5 for w in pv],
                   load_w=[w * rng.uniform(0.5, 3) for w in load], battery=battery,
                   soc0_pct=rng.choice([battery.soc_min_pct, 50.0, battery.soc_max_pct]),
                   soc_step_pct=0.1, grid_import_max_w=rng.choice([None, 2500.0]))
    solution = dp.solve(p)
    assert_within_limits(p, solution.soc_pct, solution.battery_w)
    plan = dp.modes(p, solution)
    for mode, power, target in plan:
        if mode == "charge":
            assert power is not None
            assert 0 < power <= battery.max_charge_w
            assert target is not None
            assert battery.soc_min_pct <= target <= battery.soc_max_pct
    executed = dp.execute(p, plan)
    soc = [p.soc0_pct]
    eta = math.sqrt(battery.round_trip_efficiency)
    for w in executed:
        soc.append(soc[-1] + (w * eta if w > 0 else w / eta) * 0.25 / battery.capacity_wh * 100)
    assert_within_limits(p, soc, executed)


def test_modes_follow_the_trajectory() -> None:
    p = dp.Problem(price=[0.1, 0.4, 0.4, 0.1], export_price=[0.0] * 4, pv_w=[0.0] * 4,
                   load_w=[500.0] * 4, battery=BATTERY, soc0_pct=10, soc_step_pct=0.5)
    solution = dp.solve(p)
    plan = dp.modes(p, solution)
    assert [mode for mode, _, _ in plan[:3]] == ["charge", "normal", "normal"]
    _, power, target = plan[0]
    assert power == round(solution.battery_w[0])
    assert target == math.ceil(solution.soc_pct[1])


def test_partial_discharge_is_a_capped_normal_slot_and_charge_blocks_share_a_target() -> None:
    p = dp.Problem(price=[0.1] * 4 + [0.3] * 4, export_price=[0.0] * 8, pv_w=[0.0] * 8,
                   load_w=[300.0] * 8, battery=BATTERY, soc0_pct=10, soc_step_pct=0.5)
    solution = dp.Solution(soc_pct=[10, 12, 14, 16, 18, 17.5, 17, 16.5, 16],
                           battery_w=[800, 800, 800, 800, -200, -200, -200, -200], grid_w=[], cost=0)
    plan = dp.modes(p, solution)
    assert plan[:4] == [("charge", 800, 18.0)] * 4  # one target for the block: fewer writes
    assert plan[4:] == [("normal", 200.0, None)] * 4  # covers 200 of the 300 W: a cap
    executed = dp.execute(p, plan)
    assert executed[4:] == pytest.approx([-200.0] * 4)
