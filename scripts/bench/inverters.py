#!/usr/bin/env python3
"""Benchmark the three-phase Deye and SunSpec storage profiles against their emulated devices.

Each profile against a real pymodbus server on 127.0.0.1 serving its map (pi/sim/deye.py,
pi/sim/sunspec.py, model 103 and model 113 chains):

1. Probe: identification (Deye) or SunSpec discovery (marker, model chain, scale factors)
   on an open connection: wall time and Modbus requests.
2. A mode change: the executor entering a charge slot from normal (writes, settle 0, read-back)
   and a steady tick (telemetry only): wall time and writes.
3. Writes per day: the planner's winter-day plan (as control_executor.py builds it) slot by
   slot through each profile, counting the registers that change (the SoC-target holds the
   executor adds are not counted): against the default write budget of 200 a day.

    .venv/bin/python scripts/bench/inverters.py [--rounds 50] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import Target, emit_json, machine, machine_line, run, summary
from control_executor import typical_plan

from pi.control import plan as plans
from pi.control import probe
from pi.control import profile as profiles
from pi.control.config import ControlConfig, Limits
from pi.control.device import ModbusDevice, _runs
from pi.control.executor import FOLLOWING, Executor, WriteBudget
from pi.control.profile import Profile, Register
from pi.sim.deye import DeyeHP3
from pi.sim.registermap import RegisterMapDevice
from pi.sim.sunspec import SunSpecStorage

TARGET_WRITES = 200  # the default write_budget_per_day
TARGET_PROBE_MS = 250.0  # once per daemon start: anything under a tick is fine
LIMITS = Limits(max_charge_w=3000, max_discharge_w=3000, soc_min_pct=10, soc_max_pct=95)
T0 = datetime(2030, 1, 15, 0, 0, tzinfo=UTC)


class Counting:
    """A Device that counts the Modbus requests it makes (one per read run, one per write)."""

    def __init__(self, device: ModbusDevice) -> None:
        self.device, self.requests = device, 0

    async def read(self, registers: Sequence[Register]) -> dict[str, int]:
        self.requests += len(_runs(registers))  # the same grouping the device uses
        return await self.device.read(registers)

    async def write(self, register: Register, raw: int) -> None:
        self.requests += 1
        await self.device.write(register, raw)

    async def close(self) -> None:
        await self.device.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="probes and mode changes (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 5 <= args.rounds <= 5000:
        parser.error("--rounds in 5…5000")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"bench": "inverters", "machine": machine(), "profiles": {}}
    cases: list[tuple[str, str, RegisterMapDevice]] = [
        ("deye-sg-hp3", "deye-sg-hp3", DeyeHP3()),
        ("sunspec-storage (103)", "sunspec-storage", SunSpecStorage(inverter_model=103)),
        ("sunspec-storage (113)", "sunspec-storage", SunSpecStorage(inverter_model=113)),
    ]
    targets = []
    for label, name, sim in cases:
        if not args.json:
            print(f"  {label} …", file=sys.stderr)
        figures = await measure(profiles.load(profiles.PROFILES_DIR / f"{name}.toml"), sim,
                                args.rounds)
        result["profiles"][label] = figures
        targets += [Target(f"probe p95 ({label})", figures["probe"]["wall_ms"]["p95"],
                           TARGET_PROBE_MS, "ms"),
                    Target(f"register writes per day ({label})", figures["day"]["writes"],
                           TARGET_WRITES, "writes")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def measure(profile: Profile, sim: RegisterMapDevice, rounds: int) -> dict[str, Any]:
    await sim.start()
    device = Counting(ModbusDevice("127.0.0.1", sim.port, 1, 1.0))
    try:
        walls, found = [], profile
        for _ in range(rounds):
            device.requests = 0
            t0 = time.perf_counter()
            found = await probe.probe(profile, device)
            walls.append(time.perf_counter() - t0)
        probe_figures = {"wall_ms": summary(walls, 1000), "requests": device.requests,
                         "models": {str(m): a for m, a in found.models.items()}}
        baseline = await device.read(list(found.registers.values()))
        changes = await mode_change(profile, sim, device, baseline, rounds)
        day = writes_per_day(found, baseline)
        return {"probe": probe_figures, "mode_change": changes, "day": day}
    finally:
        await device.close()
        await sim.stop()


async def mode_change(profile: Profile, sim: RegisterMapDevice, device: Counting,
                      baseline: dict[str, int], rounds: int) -> dict[str, Any]:
    """normal → charge → normal slots, each entered by one tick; and steady ticks."""
    clock = [T0]
    config = ControlConfig.of(profile=profile, address="127.0.0.1", port=sim.port, limits=LIMITS,
                              settle_s=0.0, verify_s=60.0)

    async def no_sleep(_: float) -> None:
        return None

    executor = Executor(config, {"inverter": device}, baselines={"inverter": baseline},
                        budget=WriteBudget(1_000_000, None, lambda: clock[0].date()),  # noqa: PLW0108
                        clock=lambda: clock[0], sleep=no_sleep, monotonic=lambda: 0.0)
    charge = {"battery_mode": "charge", "power_w": 2000, "soc_target": 90}
    slots = [{"battery_mode": "normal"}, charge] * rounds
    doc = _plan_doc(T0, slots)
    executor.plan = plans.validate(doc, LIMITS, (), profile=profile)
    await executor.tick()  # probe, then the first normal slot
    assert executor.mode == FOLLOWING, executor.detail
    enter, steady, writes = [], [], []
    for i in range(1, len(slots)):
        clock[0] = T0 + timedelta(seconds=900 * i)
        before = executor.writes
        t0 = time.perf_counter()
        await executor.tick()
        enter.append(time.perf_counter() - t0)
        assert executor.mode == FOLLOWING, executor.detail
        writes.append(executor.writes - before)
        clock[0] += timedelta(seconds=5)
        t0 = time.perf_counter()
        await executor.tick()
        steady.append(time.perf_counter() - t0)
    return {"enter_wall_ms": summary(enter, 1000), "steady_wall_ms": summary(steady, 1000),
            "writes_per_change": max(writes), "changes": len(enter)}


def writes_per_day(profile: Profile, baseline: dict[str, int]) -> dict[str, Any]:
    document, _, _ = typical_plan()
    caps = {"max_charge_w": LIMITS.max_charge_w, "max_discharge_w": LIMITS.max_discharge_w}
    last = profile.targets(None, {}, baseline, caps)
    writes = 0
    for slot in document["slots"]:
        values = {k: slot.get(k) for k in ("power_w", "soc_target", "export_cap_w")}
        want = profile.targets(slot["battery_mode"], values, baseline, caps)
        writes += sum(1 for n, v in want.items() if last.get(n) != v)
        last = {**last, **want}
    back = profile.targets(None, {}, baseline, caps)
    writes += sum(1 for n, v in back.items() if last.get(n) != v)
    return {"writes": writes, "slots": len(document["slots"]),
            "modes": {m: sum(1 for s in document["slots"] if s["battery_mode"] == m)
                      for m in plans.BATTERY_MODES}}


def _plan_doc(start: datetime, slots: list[dict[str, Any]]) -> dict[str, Any]:
    out = [{"start": (start + timedelta(seconds=900 * i)).isoformat().replace("+00:00", "Z"), **s}
           for i, s in enumerate(slots)]
    end = start + timedelta(seconds=900 * len(out))
    return {"schema": plans.SCHEMA, "id": "bench", "seq": 1,
            "generated_at": out[0]["start"], "valid_from": out[0]["start"],
            "valid_until": end.isoformat().replace("+00:00", "Z"), "slot_s": 900,
            "optimizer": {"status": "optimal"}, "slots": out}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    print("inverter profiles against their emulated devices (pymodbus on 127.0.0.1)")
    for label, f in r["profiles"].items():
        p, m, day = f["probe"], f["mode_change"], f["day"]
        print(f"  {label}: probe median {p['wall_ms']['median']:.2f} ms, p95 "
              f"{p['wall_ms']['p95']:.2f} ms, {p['requests']} Modbus requests"
              + (f" (models at {p['models']})" if p["models"] else ""))
        print(f"    a slot change (normal ↔ charge): ≤ {m['writes_per_change']} writes, wall median "
              f"{m['enter_wall_ms']['median']:.2f} ms, p95 {m['enter_wall_ms']['p95']:.2f} ms; a steady "
              f"tick median {m['steady_wall_ms']['median']:.2f} ms")
        print(f"    the winter-day plan {day['modes']}: {day['writes']} register writes")
    print(machine_line(r["machine"]) + " (2 shared cores: timings are noisy)")
    for target in targets:
        print("  " + target.line())


if __name__ == "__main__":
    sys.exit(main())
