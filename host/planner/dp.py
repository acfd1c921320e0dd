"""An exact dynamic program over a discretized state of charge (pure; no I/O, no clock; numpy).

Per slot the battery moves between SoC levels ``soc_min + k × step``. A move costs what the
grid meter sees: import × import price + export × export price (either may be negative),
with the battery's AC energy ``ΔE / η`` when charging and ``ΔE × η`` when discharging
(η = √ round-trip efficiency), within the charge/discharge power limits and the grid import
limit. Feed-in above the slot's export cap is curtailed (PV first; a battery may not
discharge into the grid beyond the cap), and while exporting costs money the cap is 0:
the plan curtails rather than pay to feed in. Energy left at the end is worth the horizon's
lowest import price.

The stage cost depends only on the number of steps moved and is piecewise linear in it
(kinks where the battery turns from discharging to charging, where the meter turns from
export to import, where the cap starts to curtail), so each stage is, per linear run
``cost(k) = α + s·k``, a sliding-window minimum of ``value[m] + s·m``: computed for all
levels at once with the van Herk/Gil-Werman block minima, O(N) numpy work per run and a
handful of runs per slot, convex or not. Exact for the discretized problem (tests compare
with brute force); the grid's fineness sets the distance to the continuous optimum (tests
compare with an LP).

``modes`` turns the SoC trajectory into the Pi's battery modes (``handshake.modes``) and
``execute`` simulates what the Pi does with them on the forecast: the planner pushes a plan
only when that is no worse than ``self_consumption`` (doing nothing), simulated the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from handshake.modes import CHARGE, DISCHARGE, HOLD, LIMIT_EXPORT, NORMAL, Command
from host.planner.config import BatteryModel

INF = math.inf
Vector = npt.NDArray[np.float64]
# Energies below this (Wh) are treated as zero when classifying slots into modes.
EPS_WH = 1.0
# Two neighbouring slopes of a stage cost differing less than this are one linear run.
KINK_ABS, KINK_REL = 1e-12, 1e-9


@dataclass(frozen=True, slots=True)
class Problem:
    price: Sequence[float]  # EUR/kWh imported, per slot (may be negative: paid to import)
    export_price: Sequence[float]  # EUR/kWh exported, per slot (negative: feed-in costs)
    pv_w: Sequence[float]
    load_w: Sequence[float]
    battery: BatteryModel
    soc0_pct: float
    slot_s: float = 900.0
    soc_step_pct: float = 0.01
    grid_import_max_w: float | None = None
    # Feed-in allowed per slot (W; 0: none; None or a None entry: no cap).
    export_cap_w: Sequence[float | None] | None = None

    @property
    def slots(self) -> int:
        return len(self.price)

    @property
    def hours(self) -> float:
        return self.slot_s / 3600

    @property
    def eta(self) -> float:
        return math.sqrt(self.battery.round_trip_efficiency)

    def hard_cap(self, t: int) -> float | None:
        """The export cap the site must keep in slot ``t`` (W), None without one."""
        return None if self.export_cap_w is None else self.export_cap_w[t]

    def cap(self, t: int) -> float | None:
        """The cap a plan keeps: the site's, and 0 while feeding in costs money."""
        return 0.0 if self.export_price[t] < 0 else self.hard_cap(t)


@dataclass(frozen=True, slots=True)
class Solution:
    soc_pct: list[float]  # T + 1 values: the start SoC, then after each slot
    battery_w: list[float]  # AC side, + charging
    grid_w: list[float]  # + import, after curtailment
    cost: float  # EUR, less the worth of the energy left


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a schedule of modes does with the forecast (``execute``)."""

    battery_w: list[float]
    grid_w: list[float]
    soc_pct: list[float]  # T + 1


def levels(p: Problem) -> tuple[int, float, float]:
    """(N, E_min, ΔE): N + 1 SoC levels from E_min in steps of ΔE (Wh)."""
    b = p.battery
    n = max(1, round((b.soc_max_pct - b.soc_min_pct) / p.soc_step_pct))
    e_min = b.capacity_wh * b.soc_min_pct / 100
    return n, e_min, b.capacity_wh * (b.soc_max_pct - b.soc_min_pct) / 100 / n


def battery_ac(p: Problem, delta_wh: float) -> float:
    """AC energy (Wh, + into the battery) that moves the stored energy by ``delta_wh``."""
    return delta_wh / p.eta if delta_wh >= 0 else delta_wh * p.eta


def stage_costs(p: Problem, t: int, ac_wh: Vector) -> Vector:
    """EUR for slot ``t`` for each AC battery energy in ``ac_wh``; INF where a limit forbids it."""
    hours, b = p.hours, p.battery
    load, pv = p.load_w[t] * hours, p.pv_w[t] * hours
    net = load - pv
    grid = net + ac_wh
    cost_grid = _curtailed(grid, load + ac_wh, p.cap(t), hours)
    cost = (p.price[t] * np.maximum(cost_grid, 0.0) + p.export_price[t] * np.minimum(cost_grid, 0.0)) / 1000
    bad = (ac_wh > b.max_charge_w * hours + 1e-9) | (-ac_wh > b.max_discharge_w * hours + 1e-9)
    cap = p.cap(t)
    if cap is not None:
        bad |= load + ac_wh < -cap * hours - 1e-9  # the battery alone would feed in past the cap
    if p.grid_import_max_w is not None:
        # Charging may not push the import past the limit.
        bad |= (ac_wh > 0) & (grid > max(p.grid_import_max_w * hours, net) + 1e-9)
    return np.where(bad, INF, cost)


def stage_cost(p: Problem, t: int, ac_wh: float) -> float:
    """``stage_costs`` for one AC battery energy (tests, brute force)."""
    return float(stage_costs(p, t, np.array([ac_wh]))[0])


def solve(p: Problem) -> Solution:
    """The cheapest SoC trajectory on the level grid (the start SoC is snapped to a level)."""
    n, e_min, step = levels(p)
    hours, eta = p.hours, p.eta
    k_hi = min(n, math.floor(p.battery.max_charge_w * hours * eta / step + 1e-9))
    k_lo = -min(n, math.floor(p.battery.max_discharge_w * hours / eta / step + 1e-9))
    moves = np.arange(k_lo, k_hi + 1, dtype=np.float64) * step
    ac = np.where(moves >= 0, moves / eta, moves * eta)
    stages = [stage_costs(p, t, ac) for t in range(p.slots)]
    values = np.empty((p.slots + 1, n + 1))
    values[p.slots] = terminal_values(p, n, e_min, step)
    for t in range(p.slots - 1, -1, -1):
        values[t] = convolve(values[t + 1], k_lo, stages[t], n)
    level = _start_level(p, n, e_min, step)
    path = [level]
    for t, cs in enumerate(stages):
        j_lo, j_hi = max(0, -level - k_lo), min(len(cs) - 1, n - level - k_lo)
        total = cs[j_lo:j_hi + 1] + values[t + 1][level + k_lo + j_lo:level + k_lo + j_hi + 1]
        best = float(total.min())
        # Ties go to the smallest move: fewer cycles, fewer register writes on the Pi.
        ties = np.flatnonzero(total <= best + 1e-12) + k_lo + j_lo
        level += int(ties[np.argmin(np.abs(ties))])
        path.append(level)
    return _solution(p, path, e_min, step)


def terminal_values(p: Problem, n: int, e_min: float, step: float) -> Vector:
    """What is left in the battery at the end is worth its energy at the horizon's cheapest price.

    Without it the plan would empty the battery by the horizon's end, every time it is made.
    """
    energy = e_min + np.arange(n + 1) * step
    return -terminal_price(p) * energy * p.eta / 1000


def terminal_price(p: Problem) -> float:
    """EUR per kWh delivered from the battery after the horizon: the lowest import price in it."""
    return max(min(p.price), 0.0)


def convolve(after: Vector, k_lo: int, cs: Vector, n: int) -> Vector:
    """min over k of cs[k - k_lo] + after[i + k], for every level i, exactly.

    On each linear run of ``cs`` (cost α + s·k for k in [k_a, k_b]) the minimum is
    ``α − s·i + min over m in [i + k_a, i + k_b] of (after[m] + s·m)``: a sliding window.
    """
    best = np.full(n + 1, INF)
    level = np.arange(n + 1, dtype=np.float64)  # i, and m: both run over the levels
    for a, b in linear_runs(cs):
        slope = (cs[b] - cs[a]) / (b - a) if b > a else 0.0
        k_a = k_lo + a
        alpha = cs[a] - slope * k_a
        window = _window_min(after + slope * level, k_a, b - a + 1, n)
        np.minimum(best, alpha - slope * level + window, out=best)
    return best


def linear_runs(cs: Vector) -> list[tuple[int, int]]:
    """Index ranges [a, b] over finite stretches of ``cs`` on which it is linear
    (adjacent runs share their ends)."""
    finite = np.isfinite(cs)
    runs: list[tuple[int, int]] = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        seg = cs[start:stop]
        if len(seg) < 3:
            runs.append((int(start), int(stop - 1)))
            continue
        d = np.diff(seg)
        tol = KINK_ABS + KINK_REL * np.maximum(np.abs(d[1:]), np.abs(d[:-1]))
        kinks = np.flatnonzero(np.abs(d[1:] - d[:-1]) > tol) + 1 + start
        bounds = [int(start), *map(int, kinks), int(stop - 1)]
        runs.extend(pairwise(bounds))
    return runs


def _window_min(h: Vector, offset: int, width: int, n: int) -> Vector:
    """r[i] = min of h[m] for m in [i + offset, i + offset + width - 1] ∩ [0, n] (INF if empty)."""
    left = max(0, -offset)
    right = max(0, n + offset + width - 1 - n)
    padded = np.concatenate((np.full(left, INF), h, np.full(right, INF)))
    if width == 1:
        return padded[offset + left:offset + left + n + 1]
    blocks = -(-len(padded) // width)
    full = np.concatenate((padded, np.full(blocks * width - len(padded), INF))).reshape(blocks, width)
    prefix = np.minimum.accumulate(full, axis=1).ravel()
    suffix = np.minimum.accumulate(full[:, ::-1], axis=1)[:, ::-1].ravel()
    start = np.arange(n + 1) + offset + left
    return np.minimum(suffix[start], prefix[start + width - 1])


def _curtailed(grid: Vector, no_pv: Vector, cap: float | None, hours: float) -> Vector:
    """The meter after curtailing PV so the feed-in stays within ``cap`` (W).

    Curtailing takes PV away, so the meter can rise at most to what it would read without
    PV (``no_pv``): feed-in the battery makes itself is not curtailed here.
    """
    if cap is None:
        return grid
    return np.maximum(grid, np.minimum(-cap * hours, no_pv))


def _start_level(p: Problem, n: int, e_min: float, step: float) -> int:
    e0 = p.battery.capacity_wh * p.soc0_pct / 100
    return min(max(round((e0 - e_min) / step), 0), n)


def _solution(p: Problem, path: list[int], e_min: float, step: float) -> Solution:
    hours, cap = p.hours, p.battery.capacity_wh
    soc = [(e_min + level * step) / cap * 100 for level in path]
    ac = [battery_ac(p, (b - a) * step) for a, b in pairwise(path)]
    grid = []
    for t in range(p.slots):
        g = _curtailed(np.array([(p.load_w[t] - p.pv_w[t]) * hours + ac[t]]),
                       np.array([p.load_w[t] * hours + ac[t]]), p.cap(t), hours)
        grid.append(float(g[0]) / hours)
    cost = sum(stage_cost(p, t, ac[t]) for t in range(p.slots))
    cost -= terminal_price(p) * (e_min + path[-1] * step) * p.eta / 1000
    return Solution(soc_pct=soc, battery_w=[a / hours for a in ac], grid_w=grid, cost=cost)


# -- the plan as the Pi carries it out --------------------------------------------------


def modes(p: Problem, s: Solution) -> list[Command]:
    """The Pi's battery mode per slot that gives the trajectory ``s`` on the forecast.

    Self-consumption is ``normal`` (``limit_export`` under a cap); more than that into the
    battery is ``charge`` at that power; less out of it is a capped ``normal``; nothing at
    all is ``hold`` (or ``discharge`` at 0 W while PV would charge it); more out of it than
    the load takes is ``discharge`` at that power. Charge and discharge blocks share their
    block's final SoC as the target: the power sets each slot's energy, and one target a
    block spares the inverter's flash.
    """
    hours, b = p.hours, p.battery
    # The level grid cannot hit self-consumption exactly: within a level of it, it is meant.
    near = max(EPS_WH, levels(p)[2] / p.eta)
    out: list[Command] = []
    for t in range(p.slots):
        ac = s.battery_w[t] * hours
        surplus = (p.pv_w[t] - p.load_w[t]) * hours
        own = _self_consumption(p, t, b.capacity_wh * s.soc_pct[t] / 100)
        cap = p.cap(t)
        power = float(round(abs(s.battery_w[t])))
        if abs(ac - own) <= near:
            out.append(Command(NORMAL) if cap is None else Command(LIMIT_EXPORT, export_cap_w=cap))
        elif ac > EPS_WH:
            target = min(max(math.ceil(s.soc_pct[t + 1] - 1e-9), b.soc_min_pct), b.soc_max_pct)
            out.append(Command(CHARGE, min(power, b.max_charge_w), float(target), cap))
        elif ac >= -EPS_WH:
            out.append(Command(HOLD, export_cap_w=cap) if surplus <= EPS_WH else
                       Command(DISCHARGE, 0.0, None, cap))
        elif -ac < -surplus - EPS_WH:  # covers part of the deficit: self-consumption, capped
            out.append(Command(NORMAL, power) if cap is None else Command(LIMIT_EXPORT, power, None, cap))
        else:
            target = min(max(math.floor(s.soc_pct[t + 1] + 1e-9), b.soc_min_pct), b.soc_max_pct)
            out.append(Command(DISCHARGE, min(power, b.max_discharge_w), float(target), cap))
    return _block_targets(out)


def self_consumption(p: Problem) -> list[Command]:
    """Doing nothing: the inverter's own self-consumption, within the site's export caps."""
    return [Command(NORMAL) if p.hard_cap(t) is None else
            Command(LIMIT_EXPORT, export_cap_w=p.hard_cap(t)) for t in range(p.slots)]


def execute(p: Problem, plan: Sequence[Command]) -> Outcome:
    """What the Pi's modes do with these forecasts (as the emulated inverter does them)."""
    hours, b, eta = p.hours, p.battery, p.eta
    e_lo, e_hi = b.capacity_wh * b.soc_min_pct / 100, b.capacity_wh * b.soc_max_pct / 100
    e = min(max(b.capacity_wh * p.soc0_pct / 100, e_lo), e_hi)
    battery, grid, soc = [], [], [e / b.capacity_wh * 100]
    for t, command in enumerate(plan):
        load, pv = p.load_w[t] * hours, p.pv_w[t] * hours
        ac = _battery(p, t, command, e, e_lo, e_hi)
        g = load - pv + ac
        if command.export_cap_w is not None:
            cap = command.export_cap_w * hours
            if load + ac < -cap:  # the inverter holds the battery's own feed-in to the cap
                ac = -(load + cap)
                g = load - pv + ac
            g = max(g, min(-cap, load + ac))
        e += ac * eta if ac > 0 else ac / eta
        battery.append(ac / hours)
        grid.append(g / hours)
        soc.append(e / b.capacity_wh * 100)
    return Outcome(battery, grid, soc)


def cost(p: Problem, outcome: Outcome) -> float:
    """What the grid meter bills (EUR)."""
    hours = p.hours
    return sum((p.price[t] * max(g, 0.0) + p.export_price[t] * min(g, 0.0)) * hours / 1000
               for t, g in enumerate(outcome.grid_w))


def net_cost(p: Problem, outcome: Outcome) -> float:
    """The bill less the worth of what is left in the battery (what ``solve`` minimizes)."""
    left = p.battery.capacity_wh * outcome.soc_pct[-1] / 100
    return cost(p, outcome) - terminal_price(p) * left * p.eta / 1000


def _battery(p: Problem, t: int, c: Command, e: float, e_lo: float, e_hi: float) -> float:
    """The AC energy (Wh, + charging) mode ``c`` moves in slot ``t`` from stored energy ``e``."""
    hours, b, eta = p.hours, p.battery, p.eta
    surplus = (p.pv_w[t] - p.load_w[t]) * hours
    up, down = max((e_hi - e) / eta, 0.0), max((e - e_lo) * eta, 0.0)
    cmax, dmax = b.max_charge_w * hours, b.max_discharge_w * hours
    if c.mode == CHARGE:
        top = min(e_hi, b.capacity_wh * (c.soc_target or b.soc_max_pct) / 100)
        if e < top - 1e-9:
            return min((c.power_w or 0.0) * hours, cmax, (top - e) / eta)
    elif c.mode == DISCHARGE:
        floor = max(e_lo, b.capacity_wh * (c.soc_target or 0.0) / 100)
        if e > floor + 1e-9 or c.power_w == 0:
            return -min((c.power_w or 0.0) * hours, dmax, (e - floor) * eta)
    elif c.mode in (NORMAL, LIMIT_EXPORT):
        cap = dmax if c.power_w is None else min(c.power_w * hours, dmax)
        ac = min(max(surplus, -cap), cmax)
        return min(ac, up) if ac > 0 else max(ac, -down)
    return min(max(surplus, 0.0), cmax, up)  # hold (and charge/discharge at their target)


def _self_consumption(p: Problem, t: int, e: float) -> float:
    b = p.battery
    e_lo, e_hi = b.capacity_wh * b.soc_min_pct / 100, b.capacity_wh * b.soc_max_pct / 100
    return _battery(p, t, Command(NORMAL), e, e_lo, e_hi)


def _block_targets(plan: list[Command]) -> list[Command]:
    """Consecutive charge (discharge) slots share the block's final SoC target."""
    out = list(plan)
    t = len(out) - 1
    while t >= 0:
        mode = out[t].mode
        if mode not in (CHARGE, DISCHARGE) or out[t].soc_target is None:
            t -= 1
            continue
        end, target = t, out[t].soc_target
        while t >= 0 and out[t].mode == mode and out[t].soc_target is not None:
            t -= 1
        for i in range(t + 1, end + 1):
            c = out[i]
            out[i] = Command(c.mode, c.power_w, target, c.export_cap_w)
    return out
