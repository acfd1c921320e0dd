"""Each battery mode through the executor against the emulated inverter (a real pymodbus
server): written, read back, and what the simulated battery and grid meter then do.

The model steps by hand: one ``sim.step`` is the inverter's own control loop between two
executor ticks, so "within one tick" is the next telemetry read after the apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from handshake import documents
from handshake.documents import ControlDocument
from handshake.errors import ValidationError
from pi.control import decide as d
from pi.control import plan as plans
from pi.control import profile as profiles
from pi.control.apply import FOLLOWING
from pi.sim import inverter as inv
from pi.sim.inverter import EmulatedInverter
from tests.test_control_support import LIMITS, Rig, close, make_rig, plan_doc, running_sim

TICK_S = 5.0


@pytest.fixture
async def sim() -> AsyncIterator[EmulatedInverter]:
    async for inverter in running_sim():
        yield inverter


@pytest.fixture
async def rig(sim: EmulatedInverter, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(sim, tmp_path)
    yield r
    await close(r)


def follow(rig: Rig, *slots: dict[str, object], **kw: object) -> None:
    """Follow these slots from the slot the clock is in."""
    now = rig.clock()
    start = datetime.fromtimestamp(now.timestamp() // 900 * 900, UTC)
    rig.executor.plan = plans.validate(plan_doc(start, list(slots), **kw), LIMITS, (),
                                       profile=rig.executor.config.profile)


def weather(sim: EmulatedInverter, pv_w: float, load_w: float, soc_pct: float = 50.0) -> None:
    sim.battery.pv_w, sim.battery.load_w, sim.battery.soc_pct = pv_w, load_w, soc_pct


async def apply_and_meter(rig: Rig, sim: EmulatedInverter) -> tuple[float, float]:
    """Apply the slot (one tick), let the inverter run one step, read the meter (next tick)."""
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (FOLLOWING, "following"), rig.executor.detail
    # Read back: what the device holds is what the slot asks for.
    assert rig.executor.decision is not None
    want = d.targets(rig.executor.decision, rig.executor.config, rig.executor.baselines)
    actual = rig.executor.actual or {}
    assert {n: actual[n] for n in want} == want  # ("keep" registers are not the slot's business)
    for name, value in want.items():
        assert await sim.register(rig.executor.registers[name][1].address) == value
    await sim.step(TICK_S)
    await rig.tick(TICK_S)
    t = rig.executor.telemetry
    assert t is not None
    return t.battery_w, t.grid_w


async def test_charge_at_a_set_power_while_pv_covers_the_load(rig: Rig, sim: EmulatedInverter) -> None:
    weather(sim, pv_w=3000, load_w=500)  # 2.5 kW surplus
    follow(rig, {"battery_mode": "charge", "power_w": 1500, "soc_target": 90})
    battery, grid = await apply_and_meter(rig, sim)
    assert (await sim.register(inv.MODE), await sim.register(inv.CHARGE_W)) == (2, 1500)
    assert battery == 1500  # exactly the set power, not the whole surplus
    assert grid == -1000  # the rest goes out
    follow(rig, {"battery_mode": "charge", "power_w": 4000, "soc_target": 90})
    weather(sim, pv_w=0, load_w=500)
    battery, grid = await apply_and_meter(rig, sim)
    assert (battery, grid) == (4000, 4500)  # from the grid (paid to import, say)


async def test_discharge_at_a_set_power_feeds_the_rest_in(rig: Rig, sim: EmulatedInverter) -> None:
    weather(sim, pv_w=0, load_w=500)
    follow(rig, {"battery_mode": "discharge", "power_w": 2000, "soc_target": 20})
    battery, grid = await apply_and_meter(rig, sim)
    assert (await sim.register(inv.MODE), await sim.register(inv.DISCHARGE_W),
            await sim.register(inv.SOC_TARGET)) == (3, 2000, 20)
    assert (battery, grid) == (-2000, -1500)
    await sim.poke(inv.SOC, 195)  # 19.5 %: at the slot's floor it holds
    sim.battery.soc_pct = 19.5
    await rig.tick(TICK_S)
    assert await sim.register(inv.MODE) == 1


async def test_discharge_at_0_w_rests_the_battery(rig: Rig, sim: EmulatedInverter) -> None:
    weather(sim, pv_w=2500, load_w=500)
    follow(rig, {"battery_mode": "discharge", "power_w": 0})
    battery, grid = await apply_and_meter(rig, sim)
    assert (battery, grid) == (0, -2000)  # PV goes to the grid, not into the battery


async def test_limit_export_holds_the_meter_to_the_cap_within_one_tick(
        rig: Rig, sim: EmulatedInverter) -> None:
    weather(sim, pv_w=4000, load_w=500, soc_pct=100)  # a full battery: all surplus goes out
    follow(rig, {"battery_mode": "normal"}, {"battery_mode": "limit_export", "export_cap_w": 600},
           {"battery_mode": "limit_export", "export_cap_w": 0})
    _, grid = await apply_and_meter(rig, sim)
    assert grid == -3500  # uncapped
    rig.advance(900 - TICK_S)
    battery, grid = await apply_and_meter(rig, sim)
    assert await sim.register(inv.EXPORT_LIMIT_W) == 600
    assert (battery, grid) == (0, -600)
    assert await sim.register(inv.PV_W) == 1100  # curtailed to load + cap
    rig.advance(900 - TICK_S)
    _, grid = await apply_and_meter(rig, sim)
    assert grid == 0


async def test_an_export_cap_goes_with_charge_hold_and_discharge(rig: Rig, sim: EmulatedInverter) -> None:
    weather(sim, pv_w=4000, load_w=500)
    follow(rig, {"battery_mode": "charge", "power_w": 1000, "soc_target": 90, "export_cap_w": 0},
           {"battery_mode": "hold", "export_cap_w": 500},
           {"battery_mode": "discharge", "power_w": 2000, "export_cap_w": 1000})
    assert await apply_and_meter(rig, sim) == (1000, 0)  # PV curtailed to load + charge
    rig.advance(900 - TICK_S)
    assert await apply_and_meter(rig, sim) == (3500, 0)  # hold: the battery takes the surplus
    weather(sim, pv_w=0, load_w=500)
    rig.advance(900 - TICK_S)
    # 2 kW asked, but only load + 1 kW may go out: the inverter holds the battery to 1.5 kW.
    assert await apply_and_meter(rig, sim) == (-1500, -1000)
    await rig.tick(900)  # the plan ends: the safe state takes the cap away again
    assert await sim.register(inv.EXPORT_LIMIT_W) == inv.NO_EXPORT_LIMIT


async def test_the_write_budget_and_hard_limits_apply_unchanged(sim: EmulatedInverter,
                                                               tmp_path: Path) -> None:
    rig = await make_rig(sim, tmp_path, budget=2)
    try:
        follow(rig, {"battery_mode": "discharge", "power_w": 2000, "export_cap_w": 0})
        await rig.tick()  # mode, discharge_w, soc_target, export_limit_w: 4 > 2
        assert rig.executor.reason == "write_budget"
        assert await sim.register(inv.MODE) == 0
    finally:
        await close(rig)
    with pytest.raises(ValidationError, match=r"slots\[0\].power_w.*hard limits"):
        plans.validate(plan_doc(slots=[{"battery_mode": "discharge", "power_w": 6000}]), LIMITS, ())


def test_a_profile_without_a_mode_refuses_plans_that_use_it(tmp_path: Path) -> None:
    text = (profiles.PROFILES_DIR / "sim-inverter.toml").read_text()
    old = text.split("[modes.discharge]")[0] + "[safe]" + text.split("[safe]")[1]
    old = old.replace('export_limit_w = { from = "export_cap_w", otherwise = "baseline" }',
                      'export_limit_w = "baseline"')
    path = tmp_path / "old.toml"
    path.write_text(old.split("[modes.limit_export]")[0] + "[modes.hold]" + old.split("[modes.hold]")[1])
    profile = profiles.load(path)  # a profile of the first vocabulary still loads
    assert set(profile.modes) == {"normal", "hold", "charge"}
    doc = plan_doc(slots=[{"battery_mode": "discharge", "power_w": 500}])
    with pytest.raises(ValidationError, match=r"slots\[0\].battery_mode: .*no discharge mode"):
        plans.validate(doc, LIMITS, (), profile=profile)
    doc = plan_doc(slots=[{"battery_mode": "hold", "export_cap_w": 0}])
    with pytest.raises(ValidationError, match=r"slots\[0\].export_cap_w: .*cannot cap the feed-in"):
        plans.validate(doc, LIMITS, (), profile=profile)
    plans.validate(plan_doc(), LIMITS, (), profile=profile)  # old plans: as before


async def test_control_json_shows_the_expected_saving(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, {"battery_mode": "normal"}, optimizer={"status": "optimal", "savings_eur": 0.4213})
    await rig.tick()
    doc = documents.convert(rig.executor.document(rig.clock(), 30), ControlDocument)
    assert doc.plan is not None
    assert (doc.plan.savings_eur, doc.plan.reason) == (0.4213, None)
    follow(rig, {"battery_mode": "normal"}, seq=2, plan_id="p2",
           optimizer={"status": "fallback", "savings_eur": 0, "reason": "dearer than nothing"})
    await rig.tick()
    doc = documents.convert(rig.executor.document(rig.clock(), 30), ControlDocument)
    assert doc.plan is not None
    assert (doc.plan.optimizer, doc.plan.savings_eur, doc.plan.reason) == \
        ("fallback", 0, "dearer than nothing")
