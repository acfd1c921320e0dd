"""The Deye profile end to end on a plain pymodbus server: commission, follow, restore the baseline."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from handshake import documents
from handshake.documents import ControlDocument
from handshake.util import atomic
from handshake.util.timeutil import iso
from pi.config import load
from pi.control import daemon
from pi.control import plan as plans
from pi.control.apply import FOLLOWING, SAFE, SAFE_UNVERIFIED
from pi.control.device import ModbusDevice
from pi.control.executor import Executor, WriteBudget
from tests.helpers import free_port, pi_toml
from tests.test_control_support import Clock, plan_doc

ROOT = Path(__file__).resolve().parent.parent
# What the installer left in the inverter: max discharge 100 A, grid charging off at 40 A,
# every time-of-use program at 20 % without grid charging.
FACTORY = {211: 100, 232: 0, 230: 40, **dict.fromkeys(range(268, 274), 20),
           **dict.fromkeys(range(274, 280), 0)}
TELEMETRY = {184: 55, 190: 1000, 169: 300}  # 55 %, discharging 1 kW, importing 300 W


class Deye:
    """A register bank at Deye's addresses, served by pymodbus on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        values = [0] * 400
        for address, value in {**FACTORY, **TELEMETRY}.items():
            values[address] = value
        self.server = ModbusTcpServer(SimDevice(id=1, simdata=[SimData(
            address=0, values=values, datatype=DataType.REGISTERS)]), address=("127.0.0.1", self.port))

    async def get(self, address: int) -> int:
        return int((await self.server.async_getValues(1, 3, address, 1))[0])


@pytest.fixture
async def deye() -> AsyncIterator[Deye]:
    bank = Deye()
    await bank.server.serve_forever(background=True)
    try:
        yield bank
    finally:
        await bank.server.shutdown()  # type: ignore[no-untyped-call]


async def edgepair(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "handshake", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_commission_then_follow_then_restore(tmp_path: Path, deye: Deye) -> None:
    path = pi_toml(tmp_path, extra=f"""
[control]
profile = "deye-sg-lp1"
address = "127.0.0.1"
port = {deye.port}
max_charge_w = 5000
settle_s = 0
""")
    config = load(path)
    control = config.control
    clock = Clock()
    executor = Executor(control, {"inverter": ModbusDevice("127.0.0.1", deye.port, 1, 0.5)},
                        baselines=daemon.load_baselines(config.private_dir),
                        budget=WriteBudget(200, None, lambda: clock().date()), clock=clock)
    executor.plan = plans.validate(plan_doc(clock(), [
        {"battery_mode": "charge", "power_w": 2560, "soc_target": 90}, {"battery_mode": "hold"}]),
        control.limits, ())
    try:
        await executor.tick()  # never commissioned: nothing is written
        assert (executor.mode, executor.reason) == (SAFE_UNVERIFIED, "not_commissioned")
        assert executor.writes == 0
        assert executor.telemetry is not None
        assert executor.telemetry.battery_w == -1000

        # A daemon that could not verify its safe state may have left plan values behind.
        documents.publish(config.public_dir / "control.json", ControlDocument(
            generated_at=iso(clock()), mode="safe_unverified", reason="verify_failed"))
        code, out = await edgepair("control", "commission", "--config", str(path))
        assert code == 1
        assert "may hold plan values" in out
        # Waiting for this very baseline: it never wrote anything.
        documents.publish(config.public_dir / "control.json", ControlDocument(
            generated_at=iso(clock()), mode="safe_unverified", reason="not_commissioned"))
        code, out = await edgepair("control", "commission", "--config", str(path))
        assert code == 0, out
        assert "baseline of 19 register(s) saved" in out
        assert "verify" in out
        baseline = atomic.read_json(config.private_dir / daemon.BASELINE_FILE)
        assert baseline["devices"]["inverter"]["registers"]["max_discharge_a"] == 100
        assert baseline["devices"]["inverter"]["registers"]["program4_soc"] == 20

        executor.baselines = daemon.load_baselines(config.private_dir)
        await executor.tick()
        assert executor.mode == FOLLOWING
        assert [await deye.get(a) for a in (211, 232, 230, 268, 273, 274)] == [0, 1, 50, 90, 90, 1]
        clock.advance(900)
        await executor.tick()  # hold: the baseline back, except no discharging
        assert [await deye.get(a) for a in (211, 232, 230, 268, 274)] == [0, 0, 40, 20, 0]
        await executor.stop()
        assert executor.mode == SAFE
        for address, value in FACTORY.items():
            assert await deye.get(address) == value

        code, out = await edgepair("control", "commission", "--config", str(path))
        assert code == 1
        assert "--force" in out
        documents.publish(config.public_dir / "control.json", ControlDocument(
            generated_at=iso(clock()), mode="following"))
        code, out = await edgepair("control", "commission", "--config", str(path), "--force")
        assert code == 0  # --force takes it anyway
        # A control.json that cannot be read vouches for nothing either.
        (config.private_dir / daemon.BASELINE_FILE).unlink()
        (config.public_dir / "control.json").write_text('{"mode": "safe"')
        code, out = await edgepair("control", "commission", "--config", str(path))
        assert code == 1
        assert "cannot tell whether the device holds plan values" in out
    finally:
        for device in executor.devices.values():
            await device.close()


async def test_commission_reports_an_unreachable_device(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, extra=f"""
[control]
profile = "sim-inverter"
address = "127.0.0.1"
port = {free_port()}
timeout_s = 0.2
""")
    code, out = await edgepair("control", "commission", "--config", str(path))
    assert code == 1
    assert "cannot connect" in out
    assert "Traceback" not in out
    code, out = await edgepair("control", "profiles")
    assert code == 0
    assert "deye-sg-lp1" in out
    assert "verify on your unit" in out
