"""An exact dynamic program over a discretized state of charge (pure; no I/O, no clock).

Per slot the battery moves between SoC levels ``soc_min + k × step``. A move costs what the
grid meter sees: import × price − export × export price, with the battery's AC energy
``ΔE / η`` when charging and ``ΔE × η`` when discharging (η = √ round-trip efficiency), within
the charge/discharge power limits and the grid import limit. Energy left at the end is worth
the horizon's lowest price. The stage cost depends only on the number of steps moved, so each
stage is a min-plus convolution of the next stage's value function with a short cost vector.
When both are convex (import price ≥ export price ≥ 0: the usual case) that convolution is a
merge of their slopes, O(N + K) per slot; otherwise each linear run of the stage cost is a
sliding-window minimum, O(N) per run (a few runs a slot). Both are exact for the discretized
problem (tests compare with brute force); the grid's fineness sets the distance to the
continuous optimum (tests compare with an LP).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import sub
from typing import TypeAlias

from host.planner.config import BatteryModel

INF = math.inf
# A value function: EUR from each SoC level on, as array("d") (8 bytes a level, not 32).
Values: TypeAlias = "array[float]"
# Energies below this (Wh) are treated as zero when classifying slots into modes.
EPS_WH = 1.0


@dataclass(frozen=True, slots=True)
class Problem:
    price: Sequence[float]  # EUR/kWh imported, per slot
    export_price: Sequence[float]  # EUR/kWh exported, per slot
    pv_w: Sequence[float]
    load_w: Sequence[float]
    battery: BatteryModel
    soc0_pct: float
    slot_s: float = 900.0
    soc_step_pct: float = 0.01
    grid_import_max_w: float | None = None

    @property
    def slots(self) -> int:
        return len(self.price)


@dataclass(frozen=True, slots=True)
class Solution:
    soc_pct: list[float]  # T + 1 values: the start SoC, then after each slot
    battery_w: list[float]  # AC side, + charging
    grid_w: list[float]  # + import
    cost: float  # EUR


def levels(p: Problem) -> tuple[int, float, float]:
    """(N, E_min, ΔE): N + 1 SoC levels from E_min in steps of ΔE (Wh)."""
    b = p.battery
    n = max(1, round((b.soc_max_pct - b.soc_min_pct) / p.soc_step_pct))
    e_min = b.capacity_wh * b.soc_min_pct / 100
    return n, e_min, b.capacity_wh * (b.soc_max_pct - b.soc_min_pct) / 100 / n


def battery_ac(p: Problem, delta_wh: float) -> float:
    """AC energy (Wh, + into the battery) that moves the stored energy by ``delta_wh``."""
    eta = math.sqrt(p.battery.round_trip_efficiency)
    return delta_wh / eta if delta_wh >= 0 else delta_wh * eta


def stage_cost(p: Problem, t: int, ac_wh: float) -> float:
    """EUR for slot ``t`` when the battery takes ``ac_wh``; INF when a limit forbids it."""
    hours = p.slot_s / 3600
    b = p.battery
    if ac_wh > b.max_charge_w * hours + 1e-9 or -ac_wh > b.max_discharge_w * hours + 1e-9:
        return INF
    net = (p.load_w[t] - p.pv_w[t]) * hours
    grid = net + ac_wh
    cap = p.grid_import_max_w
    if cap is not None and ac_wh > 0 and grid > max(cap * hours, net) + 1e-9:
        return INF  # charging may not push the import past the limit
    return (p.price[t] * max(grid, 0.0) - p.export_price[t] * max(-grid, 0.0)) / 1000


def solve(p: Problem) -> Solution:
    """The cheapest SoC trajectory on the level grid (the start SoC is snapped to a level)."""
    n, e_min, step = levels(p)
    stages = [_stage(p, t, n, step) for t in range(p.slots)]
    value = terminal_values(p, n, e_min, step)
    values = [value]
    convex = True  # the terminal value is linear; convex stages keep the value function convex
    for k_lo, cs in reversed(stages):
        convex = convex or _convex(value)
        if convex and _convex(cs):
            value = _convolve_convex(value, k_lo, cs, n)
        else:
            value, convex = _convolve(value, k_lo, cs, n), False
        values.append(value)
    values.reverse()
    level = _start_level(p, n, e_min, step)
    path = [level]
    for t, (k_lo, cs) in enumerate(stages):
        after = values[t + 1]
        j_lo, j_hi = max(0, -level - k_lo), min(len(cs) - 1, n - level - k_lo)
        total = [c + v for c, v in zip(cs[j_lo:j_hi + 1], after[level + k_lo + j_lo:],
                                       strict=False)]
        best = min(total)
        # Ties go to the smallest move: fewer cycles, fewer register writes on the Pi.
        k = min((k_lo + j_lo + j for j, v in enumerate(total) if v <= best + 1e-12), key=abs)
        level += k
        path.append(level)
    return _solution(p, path, e_min, step)


def terminal_values(p: Problem, n: int, e_min: float, step: float) -> Values:
    """What is left in the battery at the end is worth its energy at the horizon's cheapest price.

    Without it the plan would empty the battery by the horizon's end, every time it is made.
    """
    eta = math.sqrt(p.battery.round_trip_efficiency)
    price = terminal_price(p)
    return array("d", (-price * (e_min + i * step) * eta / 1000 for i in range(n + 1)))


def terminal_price(p: Problem) -> float:
    """EUR per kWh delivered from the battery after the horizon: the lowest import price in it."""
    return max(min(p.price), 0.0)


def _stage(p: Problem, t: int, n: int, step: float) -> tuple[int, list[float]]:
    """(k_lo, costs): the finite stage costs of moving k = k_lo, k_lo + 1, … levels.

    The same numbers as ``stage_cost`` (a test holds them equal), in one tight loop.
    """
    eta = math.sqrt(p.battery.round_trip_efficiency)
    hours = p.slot_s / 3600
    k_hi = min(n, math.floor(p.battery.max_charge_w * hours * eta / step + 1e-9))
    k_lo = -min(n, math.floor(p.battery.max_discharge_w * hours / eta / step + 1e-9))
    net = (p.load_w[t] - p.pv_w[t]) * hours
    buy, sell = p.price[t] / 1000, p.export_price[t] / 1000
    cap = INF if p.grid_import_max_w is None else max(p.grid_import_max_w * hours, net) + 1e-9
    out = [(buy * g if g >= 0 else sell * g) for g in (net + k * step * eta for k in range(k_lo, 0))]
    for k in range(k_hi + 1):
        g = net + k * step / eta
        if k > 0 and g > cap:
            break  # the grid import limit cuts charging short
        out.append(buy * g if g >= 0 else sell * g)
    return k_lo, out


def _convex(values: Sequence[float]) -> bool:
    return all(c - 2 * b + a >= -1e-12 for a, b, c in zip(values, values[1:], values[2:], strict=False))


def _convolve_convex(after: Values, k_lo: int, cs: list[float], n: int) -> Values:
    """min over k of cs[k] + after[i + k], for convex sequences: merge their slopes, O(N + K)."""
    k_hi = k_lo + len(cs) - 1
    g = cs[::-1]  # g(m) = cost of k = -m, for m = -k_hi … -k_lo
    slopes = sorted([*map(sub, after[1:], after), *map(sub, g[1:], g)])
    h = array("d", accumulate(slopes, initial=after[0] + g[0]))  # h(i), i = -k_hi … n - k_lo
    return h[k_hi:k_hi + n + 1]


def _convolve(after: Values, k_lo: int, cs: list[float], n: int) -> Values:
    """The same without convexity (negative or inverted prices), exactly, in O(N) per run.

    The stage cost is piecewise linear in the move k (kinks where the battery turns from
    discharging to charging and where the meter turns from export to import), so on each
    linear run ``cost(k) = α + s·k`` and ``min_k cost(k) + after[i + k]`` is
    ``α − s·i + min over the window m ∈ [i + k_a, i + k_b] of (after[m] + s·m)``: a
    sliding-window minimum (a monotone deque). A handful of runs instead of K passes.
    """
    best = array("d", [INF]) * (n + 1)
    for a, b in _linear_runs(cs):
        slope = (cs[b] - cs[a]) / (b - a) if b > a else 0.0
        k_a, k_b = k_lo + a, k_lo + b
        alpha = cs[a] - slope * k_a
        h = [v + slope * m for m, v in enumerate(after)]
        window: deque[int] = deque()
        pushed = 0  # the next m to enter the window
        for i in range(n + 1):
            lo, hi = max(0, i + k_a), min(n, i + k_b)
            while pushed <= hi:
                while window and h[window[-1]] >= h[pushed]:
                    window.pop()
                window.append(pushed)
                pushed += 1
            while window and window[0] < lo:
                window.popleft()
            if lo <= hi and window:
                best[i] = min(best[i], alpha - slope * i + h[window[0]])
    return best


def _linear_runs(cs: Sequence[float]) -> list[tuple[int, int]]:
    """Index ranges [a, b] over which ``cs`` is linear (adjacent runs share their ends)."""
    runs: list[tuple[int, int]] = []
    a = 0
    for j in range(1, len(cs) - 1):
        before, after = cs[j] - cs[j - 1], cs[j + 1] - cs[j]
        if abs(after - before) > 1e-12 + 1e-9 * max(abs(before), abs(after)):
            runs.append((a, j))
            a = j
    runs.append((a, len(cs) - 1))
    return runs


def simulate(p: Problem, battery_w: Sequence[float]) -> tuple[float, float]:
    """A given AC battery schedule (W per slot): (grid cost EUR, SoC % at the end)."""
    hours = p.slot_s / 3600
    eta = math.sqrt(p.battery.round_trip_efficiency)
    e = p.battery.capacity_wh * p.soc0_pct / 100
    for w in battery_w:
        e += w * hours * eta if w > 0 else w * hours / eta
    cost = sum(_grid_cost(p, t, w * hours) for t, w in enumerate(battery_w))
    return cost, e / p.battery.capacity_wh * 100


def net_cost(p: Problem, battery_w: Sequence[float]) -> float:
    """Grid cost less the worth of what is left in the battery (what ``solve`` minimizes)."""
    cost, end_soc = simulate(p, battery_w)
    eta = math.sqrt(p.battery.round_trip_efficiency)
    return cost - terminal_price(p) * p.battery.capacity_wh * end_soc / 100 * eta / 1000


def self_consumption(p: Problem) -> list[float]:
    """What the inverter does on its own ("normal"): the battery takes surplus, covers deficit."""
    hours = p.slot_s / 3600
    b, eta = p.battery, math.sqrt(p.battery.round_trip_efficiency)
    e = b.capacity_wh * min(max(p.soc0_pct, b.soc_min_pct), b.soc_max_pct) / 100
    e_lo, e_hi = b.capacity_wh * b.soc_min_pct / 100, b.capacity_wh * b.soc_max_pct / 100
    out = []
    for t in range(p.slots):
        surplus = (p.pv_w[t] - p.load_w[t]) * hours
        ac = min(max(surplus, -b.max_discharge_w * hours), b.max_charge_w * hours)
        ac = min(ac, (e_hi - e) / eta) if ac > 0 else max(ac, -(e - e_lo) * eta)
        e += ac * eta if ac > 0 else ac / eta
        out.append(ac / hours)
    return out


def _grid_cost(p: Problem, t: int, ac_wh: float) -> float:
    grid = (p.load_w[t] - p.pv_w[t]) * p.slot_s / 3600 + ac_wh
    return (p.price[t] * max(grid, 0.0) - p.export_price[t] * max(-grid, 0.0)) / 1000


def _start_level(p: Problem, n: int, e_min: float, step: float) -> int:
    e0 = p.battery.capacity_wh * p.soc0_pct / 100
    return min(max(round((e0 - e_min) / step), 0), n)


def _solution(p: Problem, path: list[int], e_min: float, step: float) -> Solution:
    hours = p.slot_s / 3600
    cap = p.battery.capacity_wh
    soc = [(e_min + level * step) / cap * 100 for level in path]
    ac = [battery_ac(p, (b - a) * step) for a, b in pairwise(path)]
    grid = [(p.load_w[t] - p.pv_w[t]) + ac[t] / hours for t in range(p.slots)]
    cost = sum(stage_cost(p, t, ac[t]) for t in range(p.slots))
    cost -= terminal_price(p) * (e_min + path[-1] * step) * math.sqrt(p.battery.round_trip_efficiency) / 1000
    return Solution(soc_pct=soc, battery_w=[a / hours for a in ac], grid_w=grid, cost=cost)


def modes(p: Problem, s: Solution) -> list[tuple[str, float | None, float | None]]:
    """(battery_mode, power_w, soc_target) per slot, as the Pi's executor understands them.

    charge: the battery takes more than the PV surplus (grid charging) up to the next SoC;
    hold: it covers none of a deficit; normal: self-consumption, with ``power_w`` as a
    discharge cap when it covers only part of the deficit.
    """
    hours = p.slot_s / 3600
    out: list[tuple[str, float | None, float | None]] = []
    for t in range(p.slots):
        ac = s.battery_w[t] * hours
        net = (p.load_w[t] - p.pv_w[t]) * hours
        surplus, deficit = max(-net, 0.0), max(net, 0.0)
        if ac > surplus + EPS_WH:
            target = min(math.ceil(s.soc_pct[t + 1] - 1e-9), p.battery.soc_max_pct)
            out.append(("charge", round(min(s.battery_w[t], p.battery.max_charge_w)), float(target)))
        elif deficit > EPS_WH and -ac <= EPS_WH:
            out.append(("hold", None, None))
        elif deficit > EPS_WH and -ac < deficit - EPS_WH:
            out.append(("normal", float(round(-s.battery_w[t])), None))
        else:
            out.append(("normal", None, None))
    return _block_targets(out)


def _block_targets(plan: list[tuple[str, float | None, float | None]]
                   ) -> list[tuple[str, float | None, float | None]]:
    """Consecutive charge slots share the block's final SoC target: the power already sets
    each slot's energy, and one target per block spares the inverter's flash many writes."""
    out = list(plan)
    t = len(out) - 1
    while t >= 0:
        if out[t][0] != "charge":
            t -= 1
            continue
        end, target = t, out[t][2]
        while t >= 0 and out[t][0] == "charge":
            t -= 1
        for i in range(t + 1, end + 1):
            out[i] = ("charge", out[i][1], target)
    return out


def execute(p: Problem, plan: Sequence[tuple[str, float | None, float | None]]) -> list[float]:
    """The AC battery power (W) the modes give with these forecasts (the plan's expected effect)."""
    hours = p.slot_s / 3600
    b, eta = p.battery, math.sqrt(p.battery.round_trip_efficiency)
    e_lo, e_hi = b.capacity_wh * b.soc_min_pct / 100, b.capacity_wh * b.soc_max_pct / 100
    e = min(max(b.capacity_wh * p.soc0_pct / 100, e_lo), e_hi)
    out = []
    for t, (mode, power, target) in enumerate(plan):
        surplus = (p.pv_w[t] - p.load_w[t]) * hours
        top = e_hi if target is None else min(e_hi, b.capacity_wh * target / 100)
        if mode == "charge":
            ac = min(max((power or 0.0) * hours, surplus), b.max_charge_w * hours)
            ac = max(min(ac, (top - e) / eta), 0.0)
        elif mode == "hold":
            ac = min(max(surplus, 0.0), b.max_charge_w * hours, (e_hi - e) / eta)
        else:
            cap = b.max_discharge_w if power is None else min(power, b.max_discharge_w)
            ac = min(max(surplus, -cap * hours), b.max_charge_w * hours)
            ac = min(ac, (e_hi - e) / eta) if ac > 0 else max(ac, -(e - e_lo) * eta)
        e += ac * eta if ac > 0 else ac / eta
        out.append(ac / hours)
    return out
