"""The Deye SG01HP3 and SunSpec storage profiles against pymodbus servers serving their maps.

Each: identification / discovery, every mode the profile has through the executor with
read-back, the commissioned baseline restored as the safe state, and a wrong device refused
with a clear reason and nothing written. The simulators (pi/sim/deye.py, pi/sim/sunspec.py)
write their register maps on their own, not from the profiles.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from handshake.errors import ConfigError, ValidationError
from handshake.util import atomic
from pi.control import decide as d
from pi.control import plan as plans
from pi.control import probe
from pi.control import profile as profiles
from pi.control.apply import FOLLOWING, SAFE, SAFE_UNVERIFIED
from pi.control.cli import commission
from pi.control.config import ControlConfig, Limits
from pi.control.daemon import load_baselines
from pi.control.device import ModbusDevice, _runs
from pi.control.executor import Executor, WriteBudget
from pi.control.plan import PLAN_FILE, SLOT_S
from pi.control.profile import WrongDevice
from pi.sim import deye as dy
from pi.sim import sunspec as ss
from pi.sim.deye import DeyeHP3
from pi.sim.sunspec import SunSpecStorage
from tests.e2e import spawn
from tests.helpers import pi_toml
from tests.test_control_commission import edgepair
from tests.test_control_daemon import status, terminate, until
from tests.test_control_support import Clock, plan_doc

HP3 = profiles.load(profiles.PROFILES_DIR / "deye-sg-hp3.toml")
SUNSPEC = profiles.load(profiles.PROFILES_DIR / "sunspec-storage.toml")
LIMITS = Limits(max_charge_w=5000, max_discharge_w=5000, soc_min_pct=10, soc_max_pct=95)
# The SUN-20K's rating: the current caps (50 A at 400 V) leave the installer's 50 A alone.
HP3_LIMITS = Limits(max_charge_w=20000, max_discharge_w=20000, soc_min_pct=10, soc_max_pct=95)


def config(profile: profiles.Profile, port: int, limits: Limits = LIMITS) -> ControlConfig:
    return ControlConfig.of(profile=profile, limits=limits, address="127.0.0.1", port=port,
                            settle_s=0.0, timeout_s=0.5, verify_s=60.0)


async def no_sleep(_: float) -> None:
    return None


def executor(control: ControlConfig, baselines: dict[str, dict[str, int]] | None = None,
             clock: Clock | None = None) -> Executor:
    devices: dict[str, Any] = {"inverter": ModbusDevice("127.0.0.1", control.port, 1,
                                                        control.timeout_s)}
    clock = clock or Clock()
    return Executor(control, devices, baselines=baselines or {},
                    budget=WriteBudget(1000, None, lambda: clock().date()), clock=clock,
                    sleep=no_sleep, monotonic=lambda: 1000.0)


async def commissioned(control: ControlConfig, tmp_path: Path) -> dict[str, dict[str, int]]:
    """`edgepair control commission` against the device (its own event loop, in a thread)."""
    private, public = tmp_path / "private", tmp_path / "public"
    private.mkdir(exist_ok=True)
    public.mkdir(exist_ok=True)
    assert await asyncio.to_thread(commission, control, private, public, force=True) == 0
    return load_baselines(private, control)


def follow(ex: Executor, clock: Clock, slot: dict[str, Any]) -> None:
    now = clock()
    start = datetime.fromtimestamp(now.timestamp() // 900 * 900, UTC)
    ex.plan = plans.validate(plan_doc(start, [slot] * 2), LIMITS, (), profile=ex.config.profile)


async def close(ex: Executor) -> None:
    for device in ex.devices.values():
        await device.close()


@pytest.fixture
async def hp3() -> AsyncIterator[DeyeHP3]:
    sim = DeyeHP3()
    await sim.start()
    yield sim
    await sim.stop()


# -- Deye SUN-xxK-SG01HP3 ----------------------------------------------------------------


def test_hp3_profile_is_the_three_phase_map_and_says_verify() -> None:
    text = (profiles.PROFILES_DIR / "deye-sg-hp3.toml").read_text()
    for cited in ("deye_p3.yaml", "three_phase_hv.py", "VERIFY ON YOUR UNIT"):
        assert cited in text
    assert HP3.verify_on_unit
    assert set(HP3.modes) == {"normal", "hold", "charge", "discharge", "limit_export"}
    assert {n: r.address for n, r in HP3.telemetry.items()} == {
        "soc_pct": dy.SOC, "battery_w": dy.BATTERY_W, "grid_w": dy.GRID_W}
    regs = {n: r.address for n, r in HP3.registers.items()}
    assert (regs["max_charge_a"], regs["max_discharge_a"], regs["grid_charge_a"],
            regs["grid_charge"], regs["work_mode"], regs["max_sell_w"], regs["solar_sell"]) == (
        dy.MAX_CHARGE_A, dy.MAX_DISCHARGE_A, dy.GRID_CHARGE_A, dy.GRID_CHARGE, dy.WORK_MODE,
        dy.MAX_SELL, dy.SOLAR_SELL)
    assert [regs[f"program{i}_soc"] for i in range(1, 7)] == list(range(dy.PROGRAM_SOC, dy.PROGRAM_SOC + 6))
    assert [regs[f"program{i}_charge"] for i in range(1, 7)] == list(
        range(dy.PROGRAM_CHARGE, dy.PROGRAM_CHARGE + 6))
    assert all(w.kind == "baseline" for w in HP3.safe.values())
    # HV scaling: battery power in 10 W steps (+ discharge), max sell power in 10 W steps.
    assert HP3.decode_telemetry({"soc_pct": 61, "battery_w": 0x10000 - 150, "grid_w": 2300}) == {
        "soc_pct": 61.0, "battery_w": 1500.0, "grid_w": 2300.0}
    assert HP3.targets("limit_export", {"export_cap_w": 4000}, dict.fromkeys(HP3.registers, 0)
                       )["max_sell_w"] == 400


async def test_hp3_every_mode_read_back_then_the_baseline(hp3: DeyeHP3, tmp_path: Path) -> None:
    control = config(HP3, hp3.port, HP3_LIMITS)
    baselines = await commissioned(control, tmp_path)
    assert (baselines["inverter"]["max_sell_w"], baselines["inverter"]["work_mode"]) == (1200, 2)
    await hp3.telemetry(soc_pct=50, battery_w=-800, grid_w=300)
    factory = await hp3.get(0, 800)
    clock = Clock()
    ex = executor(control, baselines, clock)
    p_soc = [dy.PROGRAM_SOC + i for i in range(6)]
    p_chg = [dy.PROGRAM_CHARGE + i for i in range(6)]
    cases: list[tuple[dict[str, Any], dict[int, int]]] = [
        ({"battery_mode": "charge", "power_w": 2000, "soc_target": 80},
         {dy.GRID_CHARGE: 1, dy.GRID_CHARGE_A: 5, dy.MAX_CHARGE_A: 5, dy.MAX_DISCHARGE_A: 0,
          **dict.fromkeys(p_soc, 80), **dict.fromkeys(p_chg, 1), dy.WORK_MODE: 2}),
        ({"battery_mode": "hold"},
         {dy.MAX_DISCHARGE_A: 0, dy.GRID_CHARGE: 0, dy.MAX_CHARGE_A: 50,
          **dict.fromkeys(p_soc, 20), **dict.fromkeys(p_chg, 0)}),
        ({"battery_mode": "discharge", "power_w": 4000, "soc_target": 30},
         {dy.WORK_MODE: 0, dy.SOLAR_SELL: 1, dy.MAX_DISCHARGE_A: 10, dy.MAX_CHARGE_A: 0,
          dy.GRID_CHARGE: 0, **dict.fromkeys(p_soc, 30), **dict.fromkeys(p_chg, 0)}),
        ({"battery_mode": "limit_export", "export_cap_w": 3000},
         {dy.MAX_SELL: 300, dy.WORK_MODE: 2, dy.MAX_DISCHARGE_A: 50}),
        ({"battery_mode": "normal", "power_w": 2000},
         {dy.MAX_DISCHARGE_A: 5, dy.MAX_SELL: 1200, dy.WORK_MODE: 2}),
    ]
    try:
        for slot, want in cases:
            follow(ex, clock, slot)
            await ex.tick()
            assert (ex.mode, ex.reason) == (FOLLOWING, "following"), (slot, ex.detail)
            held = {a: (await hp3.get(a))[0] for a in want}
            assert held == want, slot
            assert ex.telemetry == d.Telemetry(50.0, 800.0, 300.0)  # Deye + discharge → + charging
            clock.advance(900)  # the next slot
        await ex.stop()
        assert (ex.mode, ex.reason) == (SAFE, d.STOPPED), ex.detail
        assert await hp3.get(0, 800) == factory  # the commissioned settings, every register
    finally:
        await close(ex)


async def test_hp3_wrong_device_type_is_refused_and_untouched(tmp_path: Path) -> None:
    lp1 = DeyeHP3(device_type=3)  # a single-phase hybrid answering at the address
    await lp1.start()
    control = config(HP3, lp1.port)
    ex = executor(control, {"inverter": dict.fromkeys(HP3.registers, 0)})
    try:
        await ex.tick()
        assert (ex.mode, ex.reason) == (SAFE_UNVERIFIED, d.WRONG_DEVICE)
        assert "reads 3, expected 6" in ex.detail
        assert "nothing is written" in ex.detail
        assert "wrong_device" in ex.alarms
        await ex.stop()
        assert lp1.writes == []
        with pytest.raises(WrongDevice, match="Deye device type holding 0 reads 3"):
            await commissioned(control, tmp_path)
        assert not (tmp_path / "private" / "control-baseline.json").exists()
    finally:
        await close(ex)
        await lp1.stop()


# -- SunSpec storage ---------------------------------------------------------------------


@pytest.mark.parametrize("model", [103, 113])
async def test_sunspec_discovery_walks_the_chain_and_honours_scale_factors(model: int) -> None:
    sim = SunSpecStorage(inverter_model=model, household=ss.Household(soc_pct=63.4, load_w=800))
    await sim.start()
    device = ModbusDevice("127.0.0.1", sim.port, 1, 0.5)
    try:
        await sim.step(0)
        found = await probe.probe(SUNSPEC, device)
        # 1 at 40002 (66 long), the inverter at 40070, a vendor model skipped, 124, the meter.
        assert found.models == {1: 40002, model: 40070, ss.UNKNOWN_ID: sim.at[ss.UNKNOWN_ID],
                                124: sim.at[124], 203: sim.at[203]}
        assert sim.at[124] == 40070 + 2 + (50 if model == 103 else 60) + 2 + ss.UNKNOWN_LEN
        assert found.device == "edgepair SunSpec storage sim (SN SIM-0001)"
        assert found.registers["in_w_rte"].address == sim.at[124] + 2 + 11
        assert found.telemetry["soc_pct"].address == sim.at[124] + 2 + 6
        # InWRte: 0.01 % (InOutWRte_SF -2) of WChaMax 5000 W = 0.5 W a count; ± WChaMax.
        reg = found.registers["in_w_rte"]
        assert (reg.scale, reg.signed, reg.min, reg.max) == (0.5, True, -5000.0, 5000.0)
        assert found.registers["min_rsv_pct"].scale == pytest.approx(0.01)
        assert found.telemetry["battery_w"].float32 is (model == 113)
        values = found.decode_telemetry(await device.read(list(found.telemetry.values())))
        assert values == {"soc_pct": pytest.approx(63.4), "battery_w": -800.0, "grid_w": 0.0}
    finally:
        await device.close()
        await sim.stop()


async def test_sunspec_every_mode_read_back_and_carried_out(tmp_path: Path) -> None:
    sim = SunSpecStorage(household=ss.Household(soc_pct=50, pv_w=0, load_w=500))
    await sim.start()
    control = config(SUNSPEC, sim.port)
    baselines = await commissioned(control, tmp_path)
    assert baselines["inverter"] == {"storctl_mod": 0, "in_w_rte": 10000, "out_w_rte": 10000,
                                     "cha_gri_set": 0, "min_rsv_pct": 1000}
    block = sim.at[124] + 2, ss.STORAGE_LEN
    factory = await sim.get(*block)
    clock = Clock()
    ex = executor(control, baselines, clock)
    # slot, model 124 afterwards (raw), the battery's W the device then runs at (+ charging)
    cases: list[tuple[dict[str, Any], dict[str, int], float]] = [
        ({"battery_mode": "charge", "power_w": 2000, "soc_target": 90},
         {"StorCtl_Mod": 3, "InWRte": 4000, "OutWRte": 0x10000 - 4000, "ChaGriSet": 1}, 2000.0),
        ({"battery_mode": "hold"}, {"StorCtl_Mod": 2, "OutWRte": 0, "ChaGriSet": 0}, 0.0),
        ({"battery_mode": "discharge", "power_w": 3000, "soc_target": 20},
         {"StorCtl_Mod": 3, "OutWRte": 6000, "InWRte": 0x10000 - 6000, "MinRsvPct": 2000},
         -3000.0),
        ({"battery_mode": "discharge", "power_w": 0}, {"OutWRte": 0, "InWRte": 0,
                                                        "MinRsvPct": 1000}, 0.0),
        ({"battery_mode": "normal", "power_w": 300}, {"StorCtl_Mod": 2, "OutWRte": 600,
                                                      "InWRte": 10000}, -300.0),
        ({"battery_mode": "normal"}, {"StorCtl_Mod": 0, "OutWRte": 10000}, -500.0),
    ]
    try:
        for slot, want, battery_w in cases:
            follow(ex, clock, slot)
            await ex.tick()
            assert (ex.mode, ex.reason) == (FOLLOWING, "following"), (slot, ex.detail)
            assert {n: await sim.storage(n) for n in want} == want, slot
            assert await sim.step(60) == battery_w, slot
            clock.advance(900)
            await ex.tick()  # reads what the device did
            assert ex.telemetry is not None
            assert ex.telemetry.battery_w == battery_w
            assert ex.telemetry.grid_w == 500 + battery_w  # no PV: the load plus the battery
        assert {n for n, p in SUNSPEC.modes.items()} == {"normal", "hold", "charge", "discharge"}
        await ex.stop()
        assert (ex.mode, ex.reason) == (SAFE, d.STOPPED), ex.detail
        after = await sim.get(*block)
        charge_state = ss.STORAGE["ChaState"]  # measured: the only point that moved
        assert after[:charge_state] + after[charge_state + 1:] == \
            factory[:charge_state] + factory[charge_state + 1:]
    finally:
        await close(ex)
        await sim.stop()


def test_sunspec_plans_without_a_feed_in_cap_only() -> None:
    start = datetime(2030, 6, 1, 12, tzinfo=UTC)
    with pytest.raises(ValidationError, match="has no limit_export mode"):
        plans.validate(plan_doc(start, [{"battery_mode": "limit_export", "export_cap_w": 0}]),
                       LIMITS, (), profile=SUNSPEC)
    with pytest.raises(ValidationError, match="cannot cap the feed-in"):
        plans.validate(plan_doc(start, [{"battery_mode": "hold", "export_cap_w": 100}]),
                       LIMITS, (), profile=SUNSPEC)


@pytest.mark.parametrize(("kw", "problem"), [
    ({"marker": False}, 'no SunSpec marker "SunS" at 40000: \'ABCD\', 50000: Modbus exception 2'),
    ({"first_model": 7}, "the first SunSpec model at 40002 is 7, expected 1 (common)"),
    ({"storage": False}, "needs SunSpec model 124 (basic storage controls); the device has "
                         "models 1, 103, 64999, 203"),
    ({"storage_length": 20}, "model 124 (basic storage controls) at 40131 announces length 20, "
                             "expected 24"),
    ({"meter": False}, "grid_w needs SunSpec model 201 (meter (single phase)) or 202"),
])
async def test_sunspec_wrong_device_is_refused_and_untouched(kw: dict[str, Any], problem: str,
                                                             tmp_path: Path) -> None:
    sim = SunSpecStorage(**kw)
    await sim.start()
    control = config(SUNSPEC, sim.port)
    ex = executor(control, {"inverter": dict.fromkeys(SUNSPEC.registers, 0)})
    try:
        await ex.tick()
        assert (ex.mode, ex.reason) == (SAFE_UNVERIFIED, d.WRONG_DEVICE)
        assert problem in ex.detail
        assert problem in ex.alarms["wrong_device"].message
        await ex.tick()  # probed again: still wrong, still nothing written
        await ex.stop()
        assert sim.writes == []
        with pytest.raises(WrongDevice):
            await commissioned(control, tmp_path)
    finally:
        await close(ex)
        await sim.stop()


async def test_a_device_down_at_start_is_probed_again() -> None:
    sim = SunSpecStorage()
    port = await sim.start()
    await sim.stop()  # nothing listens on the port yet
    control = config(SUNSPEC, port)
    ex = executor(control, {"inverter": {"storctl_mod": 0, "in_w_rte": 10000, "out_w_rte": 10000,
                                         "cha_gri_set": 0, "min_rsv_pct": 1000}})
    try:
        await ex.tick()
        assert (ex.mode, ex.reason) == (SAFE_UNVERIFIED, d.DEVICE_UNREACHABLE)
        assert not ex.probed
        await sim.start(port=port)
        await ex.tick()
        assert ex.probed
        assert ex.config.profile.models[124] == sim.at[124]
        assert (ex.mode, ex.reason) == (SAFE, d.NO_PLAN), ex.detail
    finally:
        await close(ex)
        await sim.stop()


async def test_a_drop_writes_device_is_not_followed() -> None:
    sim = SunSpecStorage()
    await sim.start()
    sim.drop_writes = True
    clock = Clock()
    ex = executor(config(SUNSPEC, sim.port), {"inverter": {
        "storctl_mod": 0, "in_w_rte": 10000, "out_w_rte": 10000, "cha_gri_set": 0,
        "min_rsv_pct": 1000}}, clock)
    try:
        await ex.tick()
        follow(ex, clock, {"battery_mode": "hold"})
        await ex.tick()
        # Not followed: the safe state (what the device holds anyway) and the alarm.
        assert (ex.mode, ex.state.latch) == (SAFE, d.VERIFY_FAILED)
        assert "storctl_mod reads 0 after writing 2" in ex.alarms[d.VERIFY_FAILED].message
    finally:
        await close(ex)
        await sim.stop()


# -- the profile format ------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "problem"), [
    (('point = "ChaState"', 'point = "Charge"'),
     "telemetry.soc_pct.point: expected a point of model 124 of type uint16/int16/float32, "
     "got 'Charge'"),
    (("model = 124\npoint = \"StorCtl_Mod\"", "model = 125\npoint = \"StorCtl_Mod\""),
     "registers.storctl_mod.model: expected a SunSpec model id or a list of them"),
    (('percent_of = "WChaMax"        # read', 'percent_of = "WMax"        # read'),
     "registers.in_w_rte.percent_of: expected a point of model 124, got 'WMax'"),
    (("sunspec_bases = [40000, 50000, 0]", "sunspec_bases = [70000]"),
     "profile.sunspec_bases: expected a list of register addresses 0-65535"),
])
def test_sunspec_profile_problems_name_the_key(tmp_path: Path, edit: tuple[str, str],
                                               problem: str) -> None:
    text = (profiles.PROFILES_DIR / "sunspec-storage.toml").read_text()
    assert edit[0] in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        profiles.load(path)
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_identify_values_are_checked(tmp_path: Path) -> None:
    text = (profiles.PROFILES_DIR / "deye-sg-hp3.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace("values = [6]", 'values = ["six"]'))
    with pytest.raises(ConfigError, match=r"identify\.values: expected a list of raw register values"):
        profiles.load(path)


# -- end to end: `edgepair control commission` and `edgepair pi run control` -------------


def sunspec_toml(tmp_path: Path, port: int) -> Path:
    return pi_toml(tmp_path, extra=f"""
[control]
profile = "sunspec-storage"
address = "127.0.0.1"
port = {port}
max_charge_w = 5000
max_discharge_w = 5000
tick_s = 0.5
verify_s = 0.5
settle_s = 0
timeout_s = 0.5
""")


async def test_sunspec_through_the_cli_and_the_daemon(tmp_path: Path) -> None:
    sim = SunSpecStorage()
    await sim.start()
    path = sunspec_toml(tmp_path, sim.port)
    state = tmp_path / "state"
    log = tmp_path / "control.log"
    proc = None
    try:
        code, out = await edgepair("control", "commission", "--config", str(path), "--force")
        assert code == 0, out
        assert "SunSpec device: edgepair SunSpec storage sim (SN SIM-0001); models 1 at 40002" in out
        assert "baseline of 5 register(s) saved" in out
        factory = await sim.get(sim.at[124] + 2, ss.STORAGE_LEN)
        start = datetime.fromtimestamp(time.time() // SLOT_S * SLOT_S, UTC)
        charge = {"battery_mode": "charge", "power_w": 2000, "soc_target": 80}
        atomic.write_json(state / "private" / PLAN_FILE, plan_doc(start, [charge] * 4))
        proc = spawn("pi", "run", "control", "--config", str(path), log=log)

        async def charging() -> bool:
            return (await sim.storage("StorCtl_Mod"), await sim.storage("InWRte")) == (3, 4000) \
                and status(state).get("mode") == "following"

        await until("following the charge slot on the SunSpec device", charging, proc, log)
        assert status(state)["profile"] == "sunspec-storage"
        assert await terminate(proc) == 0
        assert (status(state)["mode"], status(state)["reason"]) == ("safe", "stopped")
        assert await sim.get(sim.at[124] + 2, ss.STORAGE_LEN) == factory
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        await sim.stop()


async def test_the_daemon_names_a_wrong_device_and_writes_nothing(tmp_path: Path) -> None:
    sim = SunSpecStorage(storage=False)  # a SunSpec PV inverter without storage controls
    await sim.start()
    path = sunspec_toml(tmp_path, sim.port)
    state = tmp_path / "state"
    log = tmp_path / "control.log"
    proc = None
    try:
        code, out = await edgepair("control", "commission", "--config", str(path), "--force")
        assert code == 1
        assert "needs SunSpec model 124 (basic storage controls)" in out
        assert "Traceback" not in out
        proc = spawn("pi", "run", "control", "--config", str(path), log=log)

        async def refused() -> bool:
            return status(state).get("reason") == "wrong_device"

        await until("control.json saying wrong_device", refused, proc, log)
        doc = status(state)
        assert doc["mode"] == "safe_unverified"
        assert [a["code"] for a in doc["alarms"]] == ["wrong_device"]
        assert "needs SunSpec model 124" in doc["alarms"][0]["message"]
        assert await terminate(proc) == 0
        assert sim.writes == []
        assert "Traceback" not in log.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        await sim.stop()


def test_32_bit_values_are_read_whole_and_decoded() -> None:
    pair = profiles.Register("w", 10, words=2, float32=True)
    signed = profiles.Register("i", 13, words=2, signed=True, scale=0.1)
    single = profiles.Register("s", 12)
    # One request covers both words of each (10-11, 12, 13-14).
    assert [(start, count, [r.name for r in members])
            for _, start, count, members in _runs([signed, pair, single])] == [(10, 5, ["w", "s", "i"])]
    assert pair.decode(0x4500_0000) == 2048.0
    assert signed.decode(0xFFFF_FF9C) == pytest.approx(-10.0)
    nan = profiles.Register("soc_pct", 0, words=2, float32=True)
    with pytest.raises(profiles.ImplausibleTelemetry):
        dataclasses.replace(SUNSPEC, telemetry={"soc_pct": nan}).decode_telemetry(
            {"soc_pct": 0x7FC0_0000})
