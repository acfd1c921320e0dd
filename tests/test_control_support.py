"""Helpers for the control tests: plan documents, configs, an executor on a real pymodbus server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from handshake.util.timeutil import iso
from pi.control import profile as profiles
from pi.control.config import ControlConfig, Limits, LoadConfig
from pi.control.device import ModbusDevice
from pi.control.executor import Executor, WriteBudget
from pi.control.plan import SCHEMA, SLOT_S
from pi.sim.inverter import EmulatedInverter

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
SIM = profiles.load(profiles.PROFILES_DIR / "sim-inverter.toml")
LOAD = profiles.load(profiles.PROFILES_DIR / "modbus-load.toml")
# The emulated inverter allows 5 kW: these limits keep its defaults (a test tightens them).
LIMITS = Limits(max_charge_w=4000, max_discharge_w=5000, soc_min_pct=10, soc_max_pct=95)


def plan_doc(start: datetime = T0, slots: list[dict[str, Any]] | None = None, *, seq: int = 1,
             plan_id: str = "p1", **extra: Any) -> dict[str, Any]:
    """A valid plan: by default four charge slots (2 kW to 80 %)."""
    slots = slots if slots is not None else [
        {"battery_mode": "charge", "power_w": 2000, "soc_target": 80}] * 4
    out = [{"start": iso(start + timedelta(seconds=i * SLOT_S)), **s} for i, s in enumerate(slots)]
    return {"schema": SCHEMA, "id": plan_id, "seq": seq, "generated_at": iso(start),
            "valid_from": iso(start), "valid_until": iso(start + timedelta(seconds=len(out) * SLOT_S)),
            "slot_s": SLOT_S, "optimizer": {"status": "optimal"}, "slots": out, **extra}


class Clock:
    """An injected UTC clock the test moves."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Rig:
    """An executor driving an EmulatedInverter (a real pymodbus server) on 127.0.0.1."""

    def __init__(self, sim: EmulatedInverter, executor: Executor, clock: Clock,
                 monotonic: list[float]) -> None:
        self.sim, self.executor, self.clock, self._mono = sim, executor, clock, monotonic

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._mono[0] += seconds

    async def tick(self, seconds: float = 0.0) -> None:
        self.advance(seconds)
        await self.executor.tick()


def sim_config(port: int, **kw: Any) -> ControlConfig:
    base = ControlConfig.of(profile=kw.pop("profile", SIM), limits=kw.pop("limits", LIMITS),
                            address="127.0.0.1", port=port, settle_s=0.0, timeout_s=0.3,
                            verify_s=60.0)
    return msgspec.structs.replace(base, **kw)


def load_config(port: int, name: str = "boiler", register: int = 100) -> LoadConfig:
    return LoadConfig.of(name=name, address="127.0.0.1", port=port,
                      profile=LOAD.with_switch(register, "coil", None, None))


async def running_sim(**kw: Any) -> AsyncIterator[EmulatedInverter]:
    """For a fixture: an EmulatedInverter on 127.0.0.1 (no battery model unless step_s is given)."""
    inverter = EmulatedInverter(**{"step_s": None, **kw})
    await inverter.start()
    try:
        yield inverter
    finally:
        await inverter.stop()


async def make_rig(sim: EmulatedInverter, tmp_path: Path | None = None, budget: int = 200,
                   baselines: dict[str, dict[str, int]] | None = None, **kw: Any) -> Rig:
    config = sim_config(sim.port, **kw)
    clock = Clock()
    mono = [1000.0]
    devices: dict[str, Any] = {"inverter": ModbusDevice("127.0.0.1", sim.port, 1, config.timeout_s)}
    for load in config.loads:
        devices[f"load.{load.name}"] = ModbusDevice(load.address, load.port, 1, config.timeout_s)

    async def no_sleep(_: float) -> None:
        return None

    executor = Executor(config, devices, baselines=baselines or {},
                        budget=WriteBudget(budget, tmp_path / "writes.json" if tmp_path else None,
                                           lambda: clock().date()),
                        clock=clock, sleep=no_sleep, monotonic=lambda: mono[0])
    return Rig(sim, executor, clock, mono)


async def close(rig: Rig) -> None:
    for device in rig.executor.devices.values():
        await device.close()
