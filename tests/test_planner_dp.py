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

from handshake import modes
from handshake.modes import Command
from handshake.plan import Limits
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
    move = {(t, k): dp.stage_cost(p, t, dp.battery_ac(p, k * step))
            for t in range(p.slots) for k in range(-n, n + 1)}
    best = math.inf
    for path in itertools.product(range(n + 1), repeat=p.slots):
        total, level = 0.0, start
        for t, nxt in enumerate(path):
            total += move[t, nxt - level]
            level = nxt
        best = min(best, total + terminal[level])
    return best


def small(seed: int) -> dp.Problem:
    rng = random.Random(seed)
    inverted = seed % 3 == 0  # negative prices, or export paying more than import: not convex
    caps = rng.choice([None, [rng.choice([None, 0.0, 500.0, 2000.0]) for _ in range(4)]])
    return dp.Problem(
        price=[rng.uniform(-0.1 if inverted else 0.05, 0.4) for _ in range(4)],
        export_price=[rng.uniform(-0.1 if seed % 4 == 1 else 0.0, 0.3 if inverted else 0.05)
                      for _ in range(4)],
        pv_w=[rng.uniform(0, 3000) for _ in range(4)], load_w=[rng.uniform(100, 2000) for _ in range(4)],
        battery=BatteryModel(capacity_wh=5000, soc_min_pct=10, soc_max_pct=90,
                             max_charge_w=rng.choice([1500, 3000, 8000]),
                             max_discharge_w=rng.choice([1500, 3000, 8000]), round_trip_efficiency=0.85),
        soc0_pct=rng.choice([5, 10, 30, 50, 90, 97]), soc_step_pct=10,
        grid_import_max_w=rng.choice([None, 1500, 4000]), export_cap_w=caps)


@pytest.mark.parametrize("seed", range(30))
def test_equal_to_brute_force_on_small_horizons(seed: int) -> None:
    p = small(seed)
    assert dp.solve(p).cost == pytest.approx(brute_force(p), abs=1e-9)


def test_stage_costs_curtail_to_the_cap_and_when_feeding_in_costs() -> None:
    base = {"price": [0.3], "pv_w": [4000.0], "load_w": [1000.0], "battery": BATTERY, "soc0_pct": 50}
    free = dp.Problem(export_price=[0.1], **base)  # type: ignore[arg-type]
    assert dp.stage_cost(free, 0, 0.0) == pytest.approx(-0.1 * 0.75)  # 3 kW out for 15 min
    capped = dp.Problem(export_price=[0.1], export_cap_w=[1000.0], **base)  # type: ignore[arg-type]
    assert dp.stage_cost(capped, 0, 0.0) == pytest.approx(-0.1 * 0.25)  # PV curtailed to 1 kW out
    paying = dp.Problem(export_price=[-0.05], **base)  # type: ignore[arg-type]
    assert dp.stage_cost(paying, 0, 0.0) == 0.0  # curtailed to nothing rather than pay
    # The battery's own feed-in past the cap cannot be curtailed: not allowed.
    night = dp.Problem(export_price=[0.1], export_cap_w=[0.0], **{**base, "pv_w": [0.0]})  # type: ignore[arg-type]
    assert dp.stage_cost(night, 0, -250.0) == pytest.approx(0.0)  # 1 kW to the load: fine
    assert dp.stage_cost(night, 0, -400.0) == math.inf  # 1.6 kW: 600 W into the grid


def full_convolution(after: Any, k_lo: int, cs: list[float], n: int) -> list[float]:
    """min over k of cs[k - k_lo] + after[i + k], by definition: the oracle, O(N × K)."""
    return [min((c + after[i + k_lo + j] for j, c in enumerate(cs) if 0 <= i + k_lo + j <= n),
                default=math.inf) for i in range(n + 1)]


def test_the_windows_equal_the_full_convolution_when_convex() -> None:
    rng = random.Random(7)
    after = list(itertools.accumulate(sorted(rng.uniform(-1, 1) for _ in range(40))))
    costs = list(itertools.accumulate(sorted(rng.uniform(-1, 1) for _ in range(9))))
    fast = dp.convolve(np.array(after), -4, np.array(costs), 39)
    assert len(fast) == 40
    assert list(fast) == pytest.approx(full_convolution(after, -4, costs, 39))


@pytest.mark.parametrize("seed", range(20))
def test_the_sliding_windows_equal_the_full_convolution_without_convexity(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    after = [rng.uniform(-2, 2) for _ in range(n + 1)]  # any shape at all
    # A stage cost as _stage makes it: linear runs with kinks (negative or inverted prices).
    k_lo = -rng.randint(0, 8)
    kinks = sorted(rng.sample(range(1, 20), 2))
    slopes = [rng.uniform(-1, 1) for _ in range(3)]
    cs, c = [], rng.uniform(-1, 1)
    for j in range(rng.randint(1, 20)):
        cs.append(c)
        c += slopes[sum(j >= k for k in kinks)]
    if seed % 4 == 0:  # infeasible moves at either end (an export or import cap)
        cs[:1] = [math.inf]
        cs[-1:] = [math.inf]
    assert list(dp.convolve(np.array(after), k_lo, np.array(cs), n)) == pytest.approx(
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
    assert planned < dp.net_cost(p, dp.execute(p, dp.self_consumption(p))) * 0.6  # and it pays off


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
    limits = Limits(max_charge_w=battery.max_charge_w, max_discharge_w=battery.max_discharge_w,
                    soc_min_pct=battery.soc_min_pct, soc_max_pct=battery.soc_max_pct)
    for c in plan:  # every slot is a command the Pi accepts
        raw = {"battery_mode": c.mode, "power_w": c.power_w, "soc_target": c.soc_target,
               "export_cap_w": c.export_cap_w}
        assert modes.check(raw, limits) == c
    executed = dp.execute(p, plan)
    assert_within_limits(p, executed.soc_pct, executed.battery_w)


def test_modes_follow_the_trajectory() -> None:
    p = dp.Problem(price=[0.1, 0.4, 0.4, 0.1], export_price=[0.0] * 4, pv_w=[0.0] * 4,
                   load_w=[500.0] * 4, battery=BATTERY, soc0_pct=10, soc_step_pct=0.5)
    solution = dp.solve(p)
    plan = dp.modes(p, solution)
    assert [c.mode for c in plan[:3]] == ["charge", "normal", "normal"]
    assert plan[0].power_w == round(solution.battery_w[0])
    assert plan[0].soc_target == math.ceil(solution.soc_pct[1])


def test_each_trajectory_has_its_mode() -> None:
    """Part of a deficit, more than the load, less than the surplus, nothing: each a mode."""
    p = dp.Problem(price=[0.3] * 8, export_price=[0.1] * 8, pv_w=[0.0] * 4 + [2000.0] * 4,
                   load_w=[300.0] * 4 + [500.0] * 4, battery=BATTERY, soc0_pct=50)
    soc = [50.0, 49.5, 49.0, 47.9, 46.8, 46.8, 46.8, 47.3, 47.3]
    solution = dp.Solution(soc_pct=soc, battery_w=[-200, -200, -400, -400, 0, 0, 200, 0],
                           grid_w=[], cost=0)
    plan = dp.modes(p, solution)
    assert plan[:2] == [Command("normal", 200.0)] * 2  # covers 200 of the 300 W: a cap
    assert plan[2:4] == [Command("discharge", 400.0, 46.0)] * 2  # more than the load: one floor
    assert plan[4] == Command("discharge", 0.0)  # the battery rests while PV would charge it
    assert plan[6] == Command("charge", 200.0, 48.0)  # less than the 1.5 kW surplus
    assert dp.execute(p, plan[:4]).battery_w == pytest.approx([-200.0, -200.0, -400.0, -400.0])


def test_charge_blocks_share_a_target_and_caps_go_with_every_mode() -> None:
    p = dp.Problem(price=[0.1] * 4 + [0.3] * 4, export_price=[0.0] * 8, pv_w=[0.0] * 8,
                   load_w=[300.0] * 8, battery=BATTERY, soc0_pct=10, soc_step_pct=0.5,
                   export_cap_w=[0.0] * 8)
    solution = dp.Solution(soc_pct=[10, 12, 14, 16, 18, 17.5, 17, 16.5, 16],
                           battery_w=[800, 800, 800, 800, -300, -300, -300, -300], grid_w=[], cost=0)
    plan = dp.modes(p, solution)
    assert plan[:4] == [Command("charge", 800, 18.0, 0.0)] * 4  # one target for the block
    assert plan[4:] == [Command("limit_export", export_cap_w=0.0)] * 4  # self-consumption, capped
    assert dp.self_consumption(p) == [Command("limit_export", export_cap_w=0.0)] * 8


# -- the benchmark's cases, small enough for a test (scripts/bench/planner_dp.py: full size) --

def sunny(slots: int = 96) -> tuple[list[float], list[float], list[float]]:
    price, pv, load = winter_day(1, slots=96)
    return (price * 2)[:slots], [w * 8 for w in (pv * 2)[:slots]], (load * 2)[:slots]


def noon(t: int) -> bool:
    return 40 <= t % 96 < 60


def case(name: str, step: float | None = None) -> dp.Problem:
    """A named benchmark day (or two) on the 10 kWh battery; ``step``: the SoC resolution."""
    slots = 192 if name == "two_days_negative" else 96
    price, pv, load = sunny(slots)
    export: list[float] = [0.08] * slots
    caps: list[float | None] | None = None
    if name in ("negative_import_noon", "export_cap_0_negative", "two_days_negative"):
        price = [-0.05 if noon(t) else x for t, x in enumerate(price)]
    if name == "negative_export_noon":  # the market is negative, fees keep import dear
        price = [0.12 if noon(t) else x for t, x in enumerate(price)]
        export = [-0.03 if noon(t) else x for t, x in enumerate(export)]
    if name in ("export_cap_0_negative", "two_days_negative"):  # no feed-in while negative
        export = [0.0 if noon(t) else x for t, x in enumerate(export)]
        caps = [0.0 if noon(t) else None for t in range(slots)]
    if name == "export_cap_60_pct":
        caps = [0.6 * max(pv)] * slots
    kw: dict[str, Any] = {} if step is None else {"soc_step_pct": step}
    return dp.Problem(price=price, export_price=export, pv_w=pv, load_w=load, battery=BATTERY,
                      soc0_pct=50, export_cap_w=caps, **kw)


CASES = ("negative_import_noon", "negative_export_noon", "export_cap_0_negative",
         "export_cap_60_pct", "two_days_negative")


@pytest.mark.parametrize("name", CASES)
def test_the_plan_as_carried_out_is_the_optimum_and_beats_doing_nothing(name: str) -> None:
    p = case(name)  # the default resolution: a coarser grid drifts from the modes it plans
    optimum = dp.solve(p)
    carried_out = dp.execute(p, dp.modes(p, optimum))
    planned = dp.net_cost(p, carried_out)
    nothing = dp.net_cost(p, dp.execute(p, dp.self_consumption(p)))
    assert abs(planned - optimum.cost) <= 0.01 * abs(optimum.cost)
    assert planned <= nothing
    caps = p.export_cap_w or [None] * p.slots
    for cap, grid in zip(caps, carried_out.grid_w, strict=True):
        assert cap is None or grid >= -cap - 1e-6  # never past the cap


def test_curtails_rather_than_pay_to_feed_in() -> None:
    p = case("negative_export_noon", step=0.1)
    plan = dp.modes(p, dp.solve(p))
    assert all(plan[t].export_cap_w == 0.0 for t in range(p.slots) if noon(t))
    assert all(plan[t].export_cap_w is None for t in range(p.slots) if not noon(t))
    grid = dp.execute(p, plan).grid_w
    assert min(grid[40:60]) >= 0.0
    assert min(dp.execute(p, dp.self_consumption(p)).grid_w[40:60]) < -1000  # doing nothing pays
