"""The energy history and audit through the real control daemon (in-process, on an
accelerated clock) against the emulated inverter (a real pymodbus server on 127.0.0.1),
following a plan the real host planner made; and the pure audit on its own."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handshake import documents
from handshake.documents import EnergyDocument
from handshake.util import atomic
from host.planner.cli import Inputs, build
from host.planner.config import PlannerConfig
from pi.config import load
from pi.control import audit, daemon
from pi.control.audit import Measured, SlotPlan
from pi.control.history import DATABASE, EnergyHistory, Tick, mode_code
from pi.control.plan import PLAN_FILE, SLOT_S
from pi.sim.inverter import Battery, EmulatedInverter
from tests.helpers import pi_toml

DAY = 86_400
# One simulated day in about 8 s of real time.
SPEED = 10_800.0
T0 = datetime(2030, 6, 3, 0, 0, tzinfo=UTC)


def day_inputs(start: datetime) -> Inputs:
    """A day-ahead shape: a cheap night, dear mornings and evenings; a cloudy day's PV; the load."""
    hours = [(t + 0.5) * SLOT_S / 3600 for t in range(DAY // SLOT_S)]
    price = [0.12 + 0.10 * math.exp(-((h - 8) ** 2) / 3) + 0.28 * math.exp(-((h - 19) ** 2) / 4)
             + (0.10 if h >= 6 else 0.0) for h in hours]
    pv = [500 * max(0.0, math.sin(math.pi * (h - 6) / 14)) if 6 < h < 20 else 0.0 for h in hours]
    load_w = [350 + 900 * math.exp(-((h - 7.5) ** 2) / 2) + 1400 * math.exp(-((h - 19) ** 2) / 4)
              for h in hours]
    return Inputs(start=start, price=price, export_price=[0.08] * len(hours), pv_w=pv,
                  load_w=load_w, loads={})


def planner() -> PlannerConfig:
    return PlannerConfig(prices_at="demo", soc_step_pct=0.1, capacity_wh=10_000.0,
                         round_trip_efficiency=0.9025, max_charge_w=3000.0,
                         max_discharge_w=3000.0, soc_min_pct=10.0, soc_max_pct=95.0)


async def until(what: str, check: Callable[[], bool], task: asyncio.Task[None],
                timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if task.done():
            task.result()
            raise AssertionError(f"the daemon stopped waiting for {what}")
        if time.monotonic() > end:
            raise AssertionError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.02)


async def test_a_day_through_the_daemon_adds_up_and_realises_the_forecast_saving(
        tmp_path: Path) -> None:
    inputs = day_inputs(T0)
    plan = build(planner(), inputs, 50.0, "test", 1, T0)
    assert plan["optimizer"]["status"] == "optimal"
    forecast_saving = plan["optimizer"]["savings_eur"]
    assert forecast_saving > 0.1  # the plan is worth something to audit
    sim = EmulatedInverter(battery=Battery(capacity_wh=10_000.0, soc_pct=50.0, max_w=5000.0,
                                           efficiency=0.95, reserve_pct=5.0),
                           step_s=0.004, speed=SPEED)
    port = await sim.start()
    loop = asyncio.get_running_loop()
    started: list[float] = []  # the day starts once the daemon is ready

    def clock() -> datetime:
        return T0 + timedelta(seconds=(loop.time() - started[0]) * SPEED if started else 0.0)

    async def weather() -> None:  # the household does exactly what was forecast
        while True:
            t = min(int((clock() - T0).total_seconds() // SLOT_S), len(inputs.pv_w) - 1)
            sim.battery.pv_w, sim.battery.load_w = inputs.pv_w[t], inputs.load_w[t]
            await asyncio.sleep(0.002)

    config_path = pi_toml(tmp_path, extra=f"""
[schedule]
timezone = "UTC"

[control]
profile = "sim-inverter"
address = "127.0.0.1"
port = {port}
tick_s = 0.02
verify_s = 0.05
settle_s = 0
timeout_s = 0.5
write_budget_per_day = 5000
history_commit_s = 0.2
""")
    config = load(config_path)
    state = tmp_path / "state"
    atomic.write_json(state / "private" / PLAN_FILE, plan)
    weather_task = asyncio.create_task(weather())
    run = asyncio.create_task(daemon.run(config, clock=clock,
                                         ready=lambda: started.append(loop.time())))
    try:
        end = T0 + timedelta(seconds=DAY + 900)
        await until("a simulated day", lambda: clock() >= end, run, timeout=60)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        weather_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await weather_task
        await sim.stop()

    doc = documents.read(state / "public" / "energy.json", EnergyDocument)
    assert doc is not None
    history = EnergyHistory(state / "private" / DATABASE)
    history.open()
    try:
        t0 = int(T0.timestamp())
        (day,) = history.days(T0.date(), T0.date())
        _, dt, imp, exp, chg, dis, pv, load_j, writes, slots, cost, base_cost, saving = day
        # The day's import − export is Σ grid W × dt over its ticks (within 1 %).
        grid = history.grid_integral_j(t0 * 1000, (t0 + DAY) * 1000)
        assert abs((imp - exp) - grid) <= 0.01 * max(abs(grid), imp + exp) + 1, (imp, exp, grid)
        assert dt == pytest.approx(DAY * 1000, rel=0.01)
        missing = [r["start"] - t0 for r in history.slots(t0, t0 + DAY) if not r["audited"]]
        have = {r["start"] - t0 for r in history.slots(t0, t0 + DAY)}
        # every slot audited
        assert slots == DAY // SLOT_S, (missing, sorted(set(range(0, DAY, SLOT_S)) - have))
        assert writes > 0
        # Load and PV measured are what the household did: the forecast (within 2 %).
        assert load_j / 3.6e6 == pytest.approx(sum(inputs.load_w) * SLOT_S / 3.6e6, rel=0.02)
        assert pv / 3.6e6 == pytest.approx(sum(inputs.pv_w) * SLOT_S / 3.6e6, rel=0.02)
        assert chg > 0
        assert dis > 0
        realised = history.plan(plan["id"])
        assert realised is not None
        assert realised["audited_slots"] == DAY // SLOT_S
        assert saving == pytest.approx(realised["realised_saving_eur"], abs=1e-6)
        # The simulation followed the forecast: the saving realised is the one forecast.
        assert realised["realised_saving_eur"] == pytest.approx(forecast_saving, rel=0.05), \
            (realised, forecast_saving, cost, base_cost)
        assert base_cost == pytest.approx(plan["optimizer"]["baseline_cost_eur"], rel=0.05)
    finally:
        history.close()
    assert doc.plan is not None
    assert doc.plan["id"] == plan["id"]
    assert doc.plan["forecast_saving_eur"] == pytest.approx(forecast_saving)
    assert doc.days
    assert doc.days[-1]["date"] in (T0.date().isoformat(),
                                                 (T0 + timedelta(days=1)).date().isoformat())
    first = next(d for d in doc.days if d["date"] == T0.date().isoformat())
    assert first["saving_eur"] == pytest.approx(saving, abs=1e-3)


# -- the pure audit ---------------------------------------------------------------------------


PRICED = SlotPlan(start=0, plan_id="p", mode="normal", import_eur_kwh=0.30, export_eur_kwh=0.08,
                  capacity_wh=10_000.0, round_trip_efficiency=0.81, stored_value_eur_kwh=0.20,
                  soc_min_pct=10, soc_max_pct=90, max_charge_w=3000, max_discharge_w=3000)


def test_a_slot_that_did_what_the_baseline_does_saves_nothing() -> None:
    # 2 kW load, no PV, 15 min: self-consumption discharges 500 Wh AC from 50 %.
    stored_after = 5000 - 500 / 0.9
    m = Measured(900, 0.0, 0.0, 0.0, 500 * 3600, 50.0, stored_after / 100)
    result = audit.audit(PRICED, m, None)
    assert result.cost_eur == 0
    assert result.baseline_cost_eur == pytest.approx(0)
    assert result.saving_eur == pytest.approx(0, abs=1e-9)
    assert result.baseline_end_wh == pytest.approx(stored_after)


def test_buying_what_the_baseline_took_from_the_battery_costs_its_price_less_its_worth() -> None:
    m = Measured(900, 500 * 3600, 0.0, 0.0, 500 * 3600, 50.0, 50.0)  # the grid fed the load
    result = audit.audit(PRICED, m, None)
    assert result.cost_eur == pytest.approx(0.15)
    # The battery kept 555.6 Wh the baseline spent, worth 0.20 × 0.9 each kWh.
    assert result.saving_eur == pytest.approx(-0.15 + 0.20 * 0.9 * (500 / 0.9) / 1000)


def test_without_prices_or_a_battery_model_no_saving_is_claimed() -> None:
    m = Measured(900, 3.6e6, 0.0, 0.0, 3.6e6, 50.0, 50.0)
    assert audit.audit(SlotPlan(start=0, plan_id="p", mode="normal"), m, None).cost_eur is None
    unmodelled = SlotPlan(start=0, plan_id="p", mode="normal", import_eur_kwh=0.3,
                          export_eur_kwh=0.1)
    result = audit.audit(unmodelled, m, None)
    assert result.cost_eur == pytest.approx(0.3)
    assert result.saving_eur is None


def test_retention_and_a_broken_database_set_aside(tmp_path: Path) -> None:
    path = tmp_path / DATABASE
    path.write_bytes(b"not a database at all" * 100)
    history = EnergyHistory(path, raw_retention_days=1, minute_retention_days=2)
    history.open()
    assert list(tmp_path.glob(f"{DATABASE}.broken-*"))  # kept for a post-mortem
    now = 10 * DAY
    old = [Tick((now - 3 * DAY) * 1000 + (i + 1) * 5000, 5000, 500, 100, 200, 0, 100,
                mode_code("normal"), 0) for i in range(3)]
    fresh = [Tick(now * 1000 - 60_000 + i * 5000, 5000, 500, 100, 200, 0, 100,
                  mode_code("hold", override=True), 1) for i in range(3)]
    assert history.commit(old, [], [], now - 3 * DAY + 60) == 3
    assert history.commit(fresh, [], [], now) == 3
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM raw").fetchone()[0] == 3  # older than a day: gone
        minutes = db.execute("SELECT count(*) FROM minute").fetchone()[0]
        assert minutes in (1, 2)  # the old minutes are past the two days kept
        assert db.execute("SELECT count(*) FROM daily").fetchone()[0] == 2  # days: forever
    finally:
        db.close()
        history.close()

