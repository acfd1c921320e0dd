"""The executor against a real pymodbus server on 127.0.0.1 (the emulated inverter).

The clock is injected and the settle pause is zero: each test drives ticks itself.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pi.control import decide as d
from pi.control import plan as plans
from pi.control.apply import FOLLOWING, SAFE, SAFE_UNVERIFIED
from pi.sim import inverter as inv
from pi.sim.inverter import EmulatedInverter
from tests.test_control_support import LIMITS, Rig, close, load_config, make_rig, plan_doc, running_sim

CHARGE = {"battery_mode": "charge", "power_w": 2000, "soc_target": 80}
HOLD = {"battery_mode": "hold"}
NORMAL = {"battery_mode": "normal"}
SAFE_VALUES = {"mode": 0, "charge_w": 0, "soc_target": 100, "max_discharge_w": 5000}


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
    rig.executor.plan = plans.validate(plan_doc(rig.clock(), list(slots), **kw), LIMITS, ("boiler",))


async def registers(sim: EmulatedInverter) -> dict[str, int]:
    return {"mode": await sim.register(inv.MODE), "charge_w": await sim.register(inv.CHARGE_W),
            "soc_target": await sim.register(inv.SOC_TARGET),
            "max_discharge_w": await sim.register(inv.MAX_DISCHARGE_W)}


def alarms(rig: Rig) -> set[str]:
    return {a["code"] for a in rig.executor.document(rig.clock(), 30)["alarms"]}


async def test_boots_safe_and_stays_safe_without_a_plan(rig: Rig, sim: EmulatedInverter) -> None:
    assert rig.executor.mode == SAFE_UNVERIFIED  # before anything was read back
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.NO_PLAN)
    assert sim.writes == []  # the device already holds the safe state: nothing to write
    assert await registers(sim) == SAFE_VALUES


async def test_applies_a_slot_and_verifies_it(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE)
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (FOLLOWING, d.FOLLOWING)
    assert await registers(sim) == {**SAFE_VALUES, "mode": 2, "charge_w": 2000, "soc_target": 80}
    assert len(sim.writes) == 3
    # Read back after writing: the control block was read once before and once after.
    assert sim.reads[(3, inv.MODE)] == 2
    doc = rig.executor.document(rig.clock(), 30)
    assert doc["mode"] == "following"
    assert doc["slot"]["battery_mode"] == "charge"
    assert doc["readback"]["registers"]["charge_w"] == 2000.0
    assert doc["writes_today"] == 3


async def test_no_rewrite_while_nothing_changes_but_a_reverify_every_verify_s(
        rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE, CHARGE)  # the same values across slot boundaries
    await rig.tick()
    writes, reads = len(sim.writes), sim.reads[(3, inv.MODE)]
    for _ in range(11):
        await rig.tick(5)  # 55 s: no read-back due yet
    assert sim.reads[(3, inv.MODE)] == reads
    await rig.tick(5)  # 60 s since the last verify
    assert sim.reads[(3, inv.MODE)] == reads + 1
    for _ in range(120):
        await rig.tick(5)  # into the next slots
    assert len(sim.writes) == writes
    assert rig.executor.mode == FOLLOWING


async def test_a_new_slot_writes_only_the_registers_that_differ(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, HOLD)
    await rig.tick()
    before = len(sim.writes)
    await rig.tick(900)
    assert sim.writes[before:] == [(6, inv.MODE, [1])]  # hold keeps charge_w and soc_target
    assert rig.executor.mode == FOLLOWING


async def test_expired_plan_writes_the_safe_state_and_verifies_it(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE)
    await rig.tick()
    await rig.tick(900)
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.PLAN_EXPIRED)
    assert await registers(sim) == SAFE_VALUES
    assert rig.executor.document(rig.clock(), 30)["plan"]["status"] == "expired"


async def test_a_write_the_device_drops_is_verify_failed_and_safe(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE)
    sim.drop_writes = True  # acknowledged, never applied
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.VERIFY_FAILED)
    assert d.VERIFY_FAILED in alarms(rig)
    assert await registers(sim) == SAFE_VALUES  # the safe state it verified is the device's own
    writes = len(sim.writes)
    await rig.tick(5)
    assert rig.executor.reason == d.VERIFY_FAILED  # latched for the rest of the slot
    assert len(sim.writes) == writes
    sim.drop_writes = False
    await rig.tick(900)  # the next slot is a fresh attempt
    assert rig.executor.mode == FOLLOWING
    assert d.VERIFY_FAILED not in alarms(rig)


async def test_dropped_safe_writes_are_safe_unverified(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, HOLD)
    await rig.tick()
    sim.drop_writes = True
    await rig.tick(900)  # hold does not stick, and neither does the safe state
    assert (rig.executor.mode, rig.executor.reason) == (SAFE_UNVERIFIED, d.VERIFY_FAILED)
    assert "mode reads 2 after writing 0" in rig.executor.detail


async def test_device_down_is_safe_unverified_with_an_alarm_then_recovers(
        rig: Rig, sim: EmulatedInverter, caplog: pytest.LogCaptureFixture) -> None:
    follow(rig, CHARGE, CHARGE)
    await rig.tick()
    writes = len(sim.writes)
    await sim.go_down()
    caplog.set_level(logging.DEBUG, logger="pi.control.executor")
    await rig.tick(5)
    assert (rig.executor.mode, rig.executor.reason) == (SAFE_UNVERIFIED, d.DEVICE_UNREACHABLE)
    doc = rig.executor.document(rig.clock(), 30)
    assert [a["code"] for a in doc["alarms"]] == [d.DEVICE_UNREACHABLE]
    since = doc["alarms"][0]["since"]
    await rig.tick(5)
    assert rig.executor.document(rig.clock(), 30)["alarms"][0]["since"] == since
    telemetry_logs = [r.levelno for r in caplog.records
                      if r.getMessage().startswith("control: 127.0.0.1")]
    assert telemetry_logs == [logging.WARNING, logging.DEBUG]  # quiet while it stays down
    await sim.come_back()
    await rig.tick(5)
    assert rig.executor.mode == FOLLOWING
    assert alarms(rig) == set()
    assert len(sim.writes) == writes  # the device kept its registers: nothing to rewrite
    assert any(r.levelno == logging.INFO and "back" in r.getMessage() for r in caplog.records)


async def test_modbus_exception_responses(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE, HOLD)
    sim.exception = 4  # slave device failure on every request
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (SAFE_UNVERIFIED, d.DEVICE_ERROR)
    assert "Modbus exception 4" in rig.executor.detail
    sim.exception = None
    sim.write_exception = 3  # illegal value: refused, not retried
    await rig.tick(5)
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.VERIFY_FAILED)
    assert len(sim.writes) == 0
    sim.write_exception = None
    sim.busy_writes = 2  # busy twice, then it takes the write: retried with backoff
    await rig.tick(900)
    assert rig.executor.mode == FOLLOWING
    assert await registers(sim) == {**SAFE_VALUES, "mode": 2, "charge_w": 2000, "soc_target": 80}


async def test_external_override_reapplied_once_per_slot_then_safe(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE)
    await rig.tick()
    await sim.poke(inv.MODE, 0)  # someone switches the inverter back behind our back
    await rig.tick(60)  # the next read-back sees it
    assert rig.executor.mode == FOLLOWING
    assert await sim.register(inv.MODE) == 2  # re-applied once
    assert d.EXTERNAL_OVERRIDE in alarms(rig)
    await sim.poke(inv.CHARGE_W, 500)
    await rig.tick(60)
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.EXTERNAL_OVERRIDE)
    assert await registers(sim) == SAFE_VALUES
    await rig.tick(60)
    assert rig.executor.reason == d.EXTERNAL_OVERRIDE  # until the slot ends
    await rig.tick(900 - 180)
    assert rig.executor.mode == FOLLOWING


async def test_write_budget_leaves_only_the_safe_state(sim: EmulatedInverter, tmp_path: Path) -> None:
    rig = await make_rig(sim, tmp_path, budget=4)
    try:
        follow(rig, CHARGE, HOLD, CHARGE)
        await rig.tick()  # 3 writes
        await rig.tick(900)  # hold: 1 write, 4 of 4 used
        assert rig.executor.mode == FOLLOWING
        await rig.tick(900)  # charge needs one more: refused, the safe state is written anyway
        assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.WRITE_BUDGET)
        assert d.WRITE_BUDGET in alarms(rig)
        assert await registers(sim) == SAFE_VALUES
        assert rig.executor.document(rig.clock(), 30)["writes_today"] == 7  # + 3 safe writes
        assert (tmp_path / "writes.json").exists()  # survives a restart
    finally:
        await close(rig)


async def test_soc_target_reached_holds_with_hysteresis(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, {"battery_mode": "charge", "power_w": 2000, "soc_target": 50}, CHARGE)
    await sim.poke(inv.SOC, 500)  # 50.0 %
    await rig.tick()
    assert await sim.register(inv.MODE) == 1
    assert rig.executor.document(rig.clock(), 30)["slot"]["effective_mode"] == "hold"
    await sim.poke(inv.SOC, 490)  # 49 %: within the 2-point band, still holding
    await rig.tick(5)
    assert await sim.register(inv.MODE) == 1


async def test_normal_slot_holds_at_the_soc_floor(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, NORMAL)
    await sim.poke(inv.SOC, 90)  # 9 %, below the 10 % floor
    await rig.tick()
    assert await sim.register(inv.MODE) == 1


async def test_hard_limit_goes_safe_for_the_rest_of_the_slot(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE)
    await rig.tick()
    await sim.poke(inv.BATTERY_W, 6000)  # 6 kW into a battery limited to 4 kW
    await rig.tick(5)
    assert rig.executor.mode == FOLLOWING  # one reading is not enough
    await rig.tick(5)
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.HARD_LIMIT)
    assert await registers(sim) == SAFE_VALUES
    await sim.poke(inv.BATTERY_W, 0)
    await rig.tick(5)
    assert rig.executor.reason == d.HARD_LIMIT


async def test_implausible_telemetry_is_safe(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE)
    await sim.poke(inv.SOC, 2000)  # 200 %
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.IMPLAUSIBLE)
    assert d.IMPLAUSIBLE in alarms(rig)


async def test_loads_follow_the_slot_and_fall_back_to_their_safe_state(
        sim: EmulatedInverter, tmp_path: Path) -> None:
    rig = await make_rig(sim, tmp_path, loads=(load_config(sim.port),))
    try:
        follow(rig, {**CHARGE, "loads": {"boiler": True}}, CHARGE)
        await rig.tick()
        assert await sim.coil(100) is True
        assert rig.executor.document(rig.clock(), 30)["slot"]["loads"] == {"boiler": True}
        await rig.tick(900)  # the next slot does not name it: its safe state (off)
        assert await sim.coil(100) is False
        assert rig.executor.mode == FOLLOWING
    finally:
        await close(rig)


async def test_stop_writes_and_verifies_the_safe_state(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE)
    await rig.tick()
    await rig.executor.stop()
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.STOPPED)
    assert await registers(sim) == SAFE_VALUES


async def test_a_new_plan_clears_a_latch(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE)
    sim.drop_writes = True
    await rig.tick()
    assert rig.executor.reason == d.VERIFY_FAILED
    sim.drop_writes = False
    follow(rig, CHARGE, CHARGE, plan_id="p2", seq=2)
    await rig.tick(5)
    assert rig.executor.mode == FOLLOWING



@pytest.fixture
async def relay() -> AsyncIterator[EmulatedInverter]:
    """A second Modbus device: the boiler's relay (coil 100), on its own server."""
    async for device in running_sim():
        yield device


async def test_a_dead_relay_does_not_keep_the_inverter_from_its_safe_state(
        sim: EmulatedInverter, relay: EmulatedInverter, tmp_path: Path) -> None:
    rig = await make_rig(sim, tmp_path, loads=(load_config(relay.port),))
    try:
        follow(rig, {**CHARGE, "loads": {"boiler": True}}, CHARGE)
        await rig.tick()
        assert rig.executor.mode == FOLLOWING
        assert await relay.coil(100) is True
        await relay.go_down()
        await rig.tick(60)  # the read-back misses the relay: the plan is followed nowhere
        assert (rig.executor.mode, rig.executor.reason) == (SAFE_UNVERIFIED, d.DEVICE_UNREACHABLE)
        assert await registers(sim) == SAFE_VALUES  # the inverter is safe, and verified
        assert d.DEVICE_UNREACHABLE in alarms(rig)
        await sim.poke(inv.MODE, 2)  # and stays so, also on the way out
        await rig.executor.stop()
        assert await registers(sim) == SAFE_VALUES
        assert rig.executor.mode == SAFE_UNVERIFIED  # the relay could not be verified
    finally:
        await close(rig)


async def test_a_dead_inverter_does_not_keep_the_loads_from_their_safe_state(
        sim: EmulatedInverter, relay: EmulatedInverter, tmp_path: Path) -> None:
    rig = await make_rig(sim, tmp_path, loads=(load_config(relay.port),))
    try:
        follow(rig, {**CHARGE, "loads": {"boiler": True}})
        await rig.tick()
        assert await relay.coil(100) is True
        await sim.go_down()
        await rig.tick(5)  # no telemetry: safe wherever it can be written
        assert (rig.executor.mode, rig.executor.reason) == (SAFE_UNVERIFIED, d.DEVICE_UNREACHABLE)
        assert await relay.coil(100) is False  # a 2 kW heater does not stay on
        await rig.executor.stop()
        assert await relay.coil(100) is False
    finally:
        await close(rig)


async def test_a_safe_state_that_does_not_stick_is_retried_with_backoff(
        rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE)
    await rig.tick()
    sim.drop_writes = True
    await rig.tick(900)  # the plan expired; the safe writes are acknowledged and dropped
    assert (rig.executor.mode, rig.executor.reason) == (SAFE_UNVERIFIED, d.VERIFY_FAILED)
    first = rig.executor.writes  # the device drops them: only the executor counts them
    for _ in range(720):  # one hour of 5 s ticks
        await rig.tick(5)
    again = rig.executor.writes - first
    # 1, 2, 4, 8, 16 min after the first: 5 more rounds of the 3 dropped registers, not 720.
    assert again == 5 * 3
    assert rig.executor.mode == SAFE_UNVERIFIED
    assert "next try in" in rig.executor.detail
    sim.drop_writes = False
    await rig.tick(1920)  # the next round sticks: safe, and the backoff is reset
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.PLAN_EXPIRED)
    assert await registers(sim) == SAFE_VALUES


async def test_a_write_refused_halfway_is_no_external_override(rig: Rig, sim: EmulatedInverter) -> None:
    follow(rig, CHARGE, CHARGE)
    sim.refuse_writes_to = {inv.SOC_TARGET}  # the others of the slot are written first
    await rig.tick()
    assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.VERIFY_FAILED)
    assert await registers(sim) == SAFE_VALUES  # what was written is undone, verified
    assert d.EXTERNAL_OVERRIDE not in alarms(rig)  # our own writes are not someone else's


async def test_the_safe_state_never_goes_above_the_pis_own_hard_limits(
        sim: EmulatedInverter, tmp_path: Path) -> None:
    """The commissioned baseline allows 5 kW; [control] max_discharge_w says 4 kW."""
    tight = dataclasses.replace(LIMITS, max_discharge_w=4000)
    rig = await make_rig(sim, tmp_path, limits=tight,
                         baselines={"inverter": {"max_discharge_w": 5000}})
    try:
        rig.executor.plan = plans.validate(plan_doc(rig.clock(), [NORMAL]), tight, ())
        await rig.tick()  # a normal slot without power_w: the baseline, capped
        assert rig.executor.mode == FOLLOWING
        assert await sim.register(inv.MAX_DISCHARGE_W) == 4000
        await rig.tick(900)  # expired: the safe state, capped too
        assert (rig.executor.mode, rig.executor.reason) == (SAFE, d.PLAN_EXPIRED)
        assert await sim.register(inv.MAX_DISCHARGE_W) == 4000
        await rig.executor.stop()
        assert await sim.register(inv.MAX_DISCHARGE_W) == 4000
    finally:
        await close(rig)
