"""The control daemon's energy recorder: each tick into a pending batch, committed to the
energy history at most once per ``history_commit_s`` (SD wear) in its own database thread,
and ``energy.json`` published after each commit."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeGuard

from handshake import documents
from handshake.documents import EnergyDocument
from handshake.util.quietlog import QuietLogger
from pi.control import energy
from pi.control.apply import FOLLOWING
from pi.control.audit import SlotPlan
from pi.control.executor import Executor
from pi.control.history import MS_PER_MINUTE, SLOT_S, EnergyHistory, PlanInfo, Tick, mode_code
from pi.control.plan import Plan, Slot

log = logging.getLogger(__name__)

ENERGY_JSON = "energy.json"
# A tick after a longer gap (a restart, a hung device) covers one nominal tick, not the gap.
MAX_GAP_TICKS = 3
MAX_GAP_S = 60.0
# Ticks kept in memory while the database fails (a day at a 5 s tick).
PENDING_LIMIT = 20_000


class Recorder:
    """Owns the pending batch, the history's database thread and energy.json."""

    def __init__(self, path: Path, public: Path, *, tick_s: float, commit_s: float,
                 tz: tzinfo | None = None) -> None:
        self.history = EnergyHistory(path, tz=tz)
        self.public = public / ENERGY_JSON
        self.tick_s, self.commit_s = tick_s, commit_s
        self.ticks: list[Tick] = []
        self.slots: dict[int, SlotPlan] = {}
        self.plans: dict[str, PlanInfo] = {}
        self.quiet = QuietLogger(log)
        self.commits = 0
        self._writes = 0
        self._last_ts: int | None = None
        self._last_loop: float | None = None
        self._noted: tuple[str, int] | None = None  # the last slot noted: (plan id, start)
        self._next_commit: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="energy-db")

    async def _db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        try:
            await self._db(self.history.open)
        except (sqlite3.Error, OSError) as exc:
            self.quiet.failure("open", "control: cannot open the energy history %s: %s "
                               "(control goes on without it)", self.history.path, exc)
            return
        self._last_ts = self.history.last_ts

    def note(self, executor: Executor, now: datetime, loop_time: float) -> None:
        """Queue this tick's telemetry, mode and writes (and the slot in force).

        A tick covers the time since the one before, unless the loop was away longer than
        MAX_GAP_S (a hung device, a suspended Pi): then one nominal tick, a gap stays a gap.
        """
        ts = round(now.timestamp() * 1000)
        if self._last_ts is not None and ts <= self._last_ts:
            return  # the clock went back
        gap = None if self._last_ts is None or self._last_loop is None else ts - self._last_ts
        away = None if self._last_loop is None else loop_time - self._last_loop
        if gap is None or away is None:
            dt = round(self.tick_s * 1000)
        elif away <= max(MAX_GAP_TICKS * self.tick_s, MAX_GAP_S):
            dt = gap
        else:  # one nominal tick, at the clock's rate
            dt = round(self.tick_s * 1000 * gap / 1000 / max(away, 1e-9))
        self._last_ts, self._last_loop = ts, loop_time
        t = executor.telemetry
        pv = load = None
        if t is not None:
            pv, load = t.pv_w, t.load_w
            if load is None and pv is not None:
                load = max(t.grid_w + pv - t.battery_w, 0.0)
            elif pv is None and load is not None:
                pv = max(load + t.battery_w - t.grid_w, 0.0)
        decision = executor.decision
        mode = decision.battery_mode if executor.mode == FOLLOWING and decision is not None \
            and decision.battery_mode else executor.mode
        writes, self._writes = executor.writes - self._writes, executor.writes
        values = (None if t is None else round(t.soc_pct * 10),
                  None if t is None else round(t.battery_w), None if t is None else round(t.grid_w),
                  None if pv is None else round(pv), None if load is None else round(load),
                  mode_code(mode, executor.override_active(now)))
        # Split at minute boundaries: each minute (and so each slot and day) gets the energy
        # of its own part of the tick, however long the tick was.
        end = ts
        while True:
            boundary = (end - 1) // MS_PER_MINUTE * MS_PER_MINUTE
            if end - dt >= boundary:
                self.ticks.append(Tick(end, dt, *values, writes))
                break
            self.ticks.append(Tick(end, end - boundary, *values, writes))
            dt -= end - boundary
            end, writes = boundary, 0
        if len(self.ticks) > PENDING_LIMIT:
            del self.ticks[0]
        self._note_plan(executor, now)

    def _note_plan(self, executor: Executor, now: datetime) -> None:
        plan = executor.plan
        slot = plan.slot_at(now) if plan is not None else None
        if plan is None or slot is None:
            return
        start = int(slot.start.timestamp())
        if start in self.slots and self.slots[start].plan_id == plan.id:
            return
        # Slots of this plan no tick fell into (a slow device) were in force all the same.
        previous = self._noted
        self._noted = (plan.id, start)
        if previous is not None and previous[0] == plan.id and previous[1] < start:
            for missed in range(previous[1] + SLOT_S, start, SLOT_S):
                at = datetime.fromtimestamp(missed, UTC)
                skipped = plan.slot_at(at)
                if skipped is not None:
                    self._note_slot(plan, skipped)
        self._note_slot(plan, slot)

    def _note_slot(self, plan: Plan, slot: Slot) -> None:
        start = int(slot.start.timestamp())
        if plan.id not in self.plans:
            savings = plan.optimizer.get("savings_eur")
            self.plans[plan.id] = PlanInfo(plan.id, plan.seq, int(plan.valid_from.timestamp()),
                                           int(plan.valid_until.timestamp()),
                                           float(savings) if _number(savings) else None)
        battery = plan.optimizer.get("battery") or {}
        value = plan.optimizer.get("stored_value_eur_kwh")
        f, lim = slot.forecast, plan.limits
        self.slots[start] = SlotPlan(
            start, plan.id, slot.battery_mode, slot.power_w, slot.soc_target,
            f.get("import_eur_kwh"), f.get("export_eur_kwh"), _watts(f.get("pv_w")),
            _watts(f.get("load_w")), _watts(f.get("battery_w")), _watts(f.get("grid_w")),
            f.get("soc_pct"),
            _positive(battery.get("capacity_wh")) if isinstance(battery, dict) else None,
            _positive(battery.get("round_trip_efficiency")) if isinstance(battery, dict) else None,
            float(value) if _number(value) else None,
            lim.soc_min_pct, lim.soc_max_pct, lim.max_charge_w, lim.max_discharge_w)

    async def maybe_commit(self, loop_time: float, now: datetime) -> None:
        if self._next_commit is None:
            self._next_commit = loop_time + self.commit_s
        if loop_time >= self._next_commit:
            self._next_commit = max(self._next_commit + self.commit_s, loop_time)
            await self.commit(now)

    async def commit(self, now: datetime) -> None:
        """Commit the batch and publish energy.json; a failure keeps the batch for next time."""
        if not self.history.is_open:
            await self.open()
            if not self.history.is_open:
                return
        ticks, slots, plans = self.ticks, list(self.slots.values()), list(self.plans.values())
        self.ticks = []
        try:
            await self._db(self._commit, ticks, slots, plans, now.timestamp())
        except (sqlite3.Error, OSError) as exc:
            self.ticks[:0] = ticks
            self.quiet.failure("history", "control: cannot write the energy history %s: %s "
                               "(keeping %d ticks in memory)", self.history.path, exc,
                               len(self.ticks))
            return
        self.quiet.success("history", "control: the energy history is writable again")
        # Keep the slot in force (a later tick may see a new plan for it); drop the rest.
        current = max(self.slots, default=None)
        self.slots = {current: self.slots[current]} if current is not None else {}
        self.plans = {}

    def _commit(self, ticks: list[Tick], slots: list[SlotPlan], plans: list[PlanInfo],
                now: float) -> None:
        self.history.commit(ticks, slots, plans, now)
        self.commits += 1
        doc = energy.build(self.history, now, self.commit_s)
        documents.try_publish(self.public, documents.convert(doc, EnergyDocument), self.quiet,
                              compact=True)  # 96 slots by the evening: ~2× smaller

    async def close(self, now: datetime) -> None:
        """The last batch, then close (the daemon's stop)."""
        try:
            if self.history.is_open:
                await self.commit(now)
                await self._db(self.history.close)
        finally:
            self._pool.shutdown(wait=True)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _watts(value: float | None) -> float | None:
    """A forecast power to the watt (stored as a small integer)."""
    return None if value is None else float(round(value))


def _positive(value: Any) -> float | None:
    return float(value) if _number(value) and value > 0 else None
