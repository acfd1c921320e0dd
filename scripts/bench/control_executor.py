#!/usr/bin/env python3
"""Benchmark energy control: executor tick cost, register writes per day, control daemon RSS.

1. Tick cost: the executor following a plan against the emulated inverter (a real pymodbus
   server on 127.0.0.1, in this process): ticks that only read telemetry, and ticks that also
   read back every control register.
2. Writes per day: the planner's plan for a winter day (96 slots, DP) carried out over a
   simulated day (the inverter's battery model stepped with the injected clock, PV and load
   from the same day), counting the register writes the sim-inverter profile needs, and the
   writes the Deye SG0xLP1 profile would need for the same decisions.
3. RSS: ``edgepair pi run control`` as a process following a plan for a while (VmRSS, VmHWM,
   CPU), then SIGTERM, which must leave the safe state.

    .venv/bin/python scripts/bench/control_executor.py [--ticks 500] [--seconds 20] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ROOT, Target, emit_json, machine, machine_line, memory, run

from handshake.util import atomic
from handshake.util.timeutil import iso
from host.planner import cli as planner_cli
from host.planner.config import BatteryModel, PlannerConfig, Source
from pi.control import decide as d
from pi.control import plan as plans
from pi.control import profile as profiles
from pi.control.config import ControlConfig, Limits
from pi.control.device import ModbusDevice
from pi.control.executor import FOLLOWING, Executor, WriteBudget
from pi.sim.inverter import Battery, EmulatedInverter
from tests.test_planner_dp import winter_day

TARGET_RSS_MB = 45.0
TARGET_WRITES = 200
QUICK = {"ticks": 100, "seconds": 4.0, "day_tick_s": 30.0}
T0 = datetime(2030, 1, 15, 0, 0, tzinfo=UTC)
BATTERY = BatteryModel(capacity_wh=10_000, soc_min_pct=10, soc_max_pct=95, max_charge_w=3000,
                       max_discharge_w=3000, round_trip_efficiency=0.9)
LIMITS = Limits(max_charge_w=3000, max_discharge_w=3000, soc_min_pct=10, soc_max_pct=95)
SIM = profiles.load(profiles.PROFILES_DIR / "sim-inverter.toml")
DEYE = profiles.load(profiles.PROFILES_DIR / "deye-sg-lp1.toml")
# A plausible installer's setup of a Deye: what commissioning would have found.
DEYE_BASELINE = {"max_discharge_a": 100, "max_charge_a": 100, "work_mode": 2, "max_sell_w": 5000,
                 "solar_sell": 1, "grid_charge": 0, "grid_charge_a": 40,
                 **{f"program{i}_soc": 20 for i in range(1, 7)},
                 **{f"program{i}_charge": 0 for i in range(1, 7)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=500, help="timed ticks per kind (default 500)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="how long the daemon runs for the RSS figure (default 20)")
    parser.add_argument("--day-tick-s", type=float, default=5.0,
                        help="tick of the simulated day (default 5 s, the production tick)")
    parser.add_argument("--quick", action="store_true", help="100 ticks, 4 s, a 30 s day tick")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.ticks, args.seconds, args.day_tick_s = QUICK["ticks"], QUICK["seconds"], QUICK["day_tick_s"]
    if not (10 <= args.ticks <= 10_000 and 1 <= args.seconds <= 600 and 1 <= args.day_tick_s <= 900):
        parser.error("--ticks in 10…10000, --seconds in 1…600, --day-tick-s in 1…900")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    result: dict[str, Any] = {"bench": "control_executor", "machine": machine()}
    say(f"  tick cost: {args.ticks} ticks of each kind …")
    result["tick"] = await tick_cost(args.ticks)
    say(f"  a simulated day, ticking every {args.day_tick_s:g} s …")
    result["day"] = await writes_per_day(args.day_tick_s)
    say(f"  the control daemon for {args.seconds:g} s …")
    result["daemon"] = await daemon_rss(args.seconds)
    targets = [Target("control daemon RSS peak (VmHWM)", result["daemon"]["peak_mb"], TARGET_RSS_MB, "MB"),
               Target("register writes per day (sim-inverter)", result["day"]["writes"], TARGET_WRITES,
                      "writes"),
               Target("register writes per day (Deye SG0xLP1 profile)", result["day"]["deye_writes"],
                      TARGET_WRITES, "writes")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


# -- 1. tick cost --------------------------------------------------------------------------

async def tick_cost(ticks: int) -> dict[str, Any]:
    sim = EmulatedInverter(step_s=None)
    await sim.start()
    clock = [T0]  # replaced as time moves: the lambdas below read it late on purpose
    mono = [0.0]
    config = ControlConfig.of(profile=SIM, address="127.0.0.1", port=sim.port, limits=LIMITS,
                           settle_s=0.0, verify_s=60.0)
    device = ModbusDevice("127.0.0.1", sim.port, 1, 1.0)

    async def no_sleep(_: float) -> None:
        return None

    executor = Executor(config, {"inverter": device}, baselines={},
                        budget=WriteBudget(10_000, None, lambda: clock[0].date()),  # noqa: PLW0108
                        clock=lambda: clock[0], sleep=no_sleep, monotonic=lambda: mono[0])
    charge = {"battery_mode": "charge", "power_w": 2000, "soc_target": 90}
    executor.plan = plans.validate(_plan_doc(T0, [charge] * 4), LIMITS, ())
    try:
        await executor.tick()
        assert executor.mode == FOLLOWING, executor.detail
        out = {}
        for kind, verify_every in (("telemetry_only", False), ("with_readback", True)):
            wall, cpu = [], []
            for _ in range(ticks):
                clock[0] += timedelta(milliseconds=100)  # stays in the first slot
                mono[0] += 60.0 if verify_every else 0.001
                w0, c0 = time.perf_counter(), time.process_time()
                await executor.tick()
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
            out[kind] = {"wall_ms": _ms(wall), "cpu_ms": _ms(cpu)}
        out["writes"] = executor.writes
        return out
    finally:
        await device.close()
        await sim.stop()


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(values) * 1000, 3),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
            "max": round(ordered[-1] * 1000, 3)}


# -- 2. writes per day ---------------------------------------------------------------------

def typical_plan() -> tuple[dict[str, Any], list[float], list[float]]:
    """The planner's plan for the winter day (as `edgepair host plan` builds it)."""
    price, pv, load = winter_day(1)
    planner = PlannerConfig.of(prices=Source("bench"), battery=BATTERY, export_price_eur_kwh=0.08)
    data = planner_cli.Inputs(start=T0, price=price, export_price=[0.08] * 96, pv_w=pv, load_w=load,
                              loads={})
    return planner_cli.build(planner, data, 50.0, "bench", 1, T0), pv, load


async def writes_per_day(tick_s: float) -> dict[str, Any]:
    document, pv, load = typical_plan()
    battery = Battery(capacity_wh=BATTERY.capacity_wh, soc_pct=50.0, max_w=5000.0,
                      efficiency=0.9 ** 0.5, reserve_pct=BATTERY.soc_min_pct)
    sim = EmulatedInverter(step_s=None, battery=battery)
    await sim.start()
    clock = [T0]
    config = ControlConfig.of(profile=SIM, address="127.0.0.1", port=sim.port, limits=LIMITS,
                           settle_s=0.0, verify_s=60.0)
    deye_config = ControlConfig.of(profile=DEYE, address="127.0.0.1", limits=LIMITS)
    device = ModbusDevice("127.0.0.1", sim.port, 1, 1.0)

    async def no_sleep(_: float) -> None:
        return None

    executor = Executor(config, {"inverter": device}, baselines={},
                        budget=WriteBudget(10_000, None, lambda: clock[0].date()),  # noqa: PLW0108
                        clock=lambda: clock[0], sleep=no_sleep,
                        monotonic=lambda: (clock[0] - T0).total_seconds())  # noqa: PLW0108
    executor.plan = plans.validate(document, LIMITS, ())
    deye_writes, deye_last = 0, DEYE.targets(None, {}, DEYE_BASELINE)
    modes: dict[str, int] = {}
    started = time.perf_counter()
    ticks = 0
    try:
        while clock[0] < T0 + timedelta(days=1):
            slot = int((clock[0] - T0).total_seconds() // 900)
            battery.pv_w, battery.load_w = pv[slot], load[slot]
            await executor.tick()
            ticks += 1
            decision = executor.decision
            assert decision is not None
            modes[executor.mode] = modes.get(executor.mode, 0) + 1
            deye = d.targets(decision, deye_config, {"inverter": DEYE_BASELINE})
            deye_writes += sum(1 for n, v in deye.items() if deye_last.get(n) != v)
            deye_last = {**deye_last, **deye}
            await sim.step(tick_s)
            clock[0] += timedelta(seconds=tick_s)
        took = time.perf_counter() - started
    finally:
        await device.close()
        await sim.stop()
    slots = document["slots"]
    changes = sum(1 for a, b in itertools.pairwise(slots)
                  if (a["battery_mode"], a["power_w"], a["soc_target"], a.get("export_cap_w"))
                  != (b["battery_mode"], b["power_w"], b["soc_target"], b.get("export_cap_w")))
    return {"tick_s": tick_s, "ticks": ticks, "simulated_in_s": round(took, 1),
            "writes": executor.writes, "deye_writes": deye_writes,
            "plan_modes": {m: sum(1 for s in slots if s["battery_mode"] == m)
                           for m in plans.BATTERY_MODES},
            "slot_changes": changes, "ticks_by_mode": modes,
            "end_soc_pct": round(battery.soc_pct, 1), "alarms": list(executor.alarms)}


def _plan_doc(start: datetime, slots: list[dict[str, Any]], seq: int = 1) -> dict[str, Any]:
    out = [{"start": iso(start + timedelta(seconds=900 * i)), **s} for i, s in enumerate(slots)]
    return {"schema": plans.SCHEMA, "id": f"bench-{seq}", "seq": seq, "generated_at": iso(start),
            "valid_from": iso(start), "valid_until": iso(start + timedelta(seconds=900 * len(out))),
            "slot_s": 900, "optimizer": {"status": "optimal"}, "slots": out}


# -- 3. the daemon's RSS -------------------------------------------------------------------

async def daemon_rss(seconds: float) -> dict[str, Any]:
    sim = EmulatedInverter(step_s=1.0)
    await sim.start()
    root = Path(tempfile.mkdtemp(prefix="edgepair-bench-control-"))
    state = root / "state"
    secrets = root / "secrets.toml"
    secrets.write_text(f'handshake_key = "{"ab" * 32}"\n')
    secrets.chmod(0o600)
    config = root / "pi.toml"
    config.write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{state}"
secrets_file = "{secrets}"
[host]
address = "127.0.0.3"
mac = "02:ED:6E:9A:17:01"
url = "http://127.0.0.3:9"
[control]
profile = "sim-inverter"
address = "127.0.0.1"
port = {sim.port}
tick_s = 1
verify_s = 5
settle_s = 0.2
""")
    start = datetime.fromtimestamp(time.time() // 900 * 900, UTC)
    charge = {"battery_mode": "charge", "power_w": 2000, "soc_target": 90}
    atomic.write_json(state / "private" / plans.PLAN_FILE, _plan_doc(start, [charge] * 8))
    log = root / "control.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "handshake", "--log-level", "WARNING", "pi", "run",
                                 "control", "--config", str(config)], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        begin = time.monotonic()
        while _status(state).get("mode") != FOLLOWING:
            if proc.poll() is not None or time.monotonic() - begin > 20:
                raise SystemExit(f"the control daemon did not follow the plan:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.05)
        started_in = time.monotonic() - begin
        first = memory(proc.pid)
        cpu0, wall0 = _cpu_s(proc.pid), time.monotonic()
        samples = []
        while time.monotonic() - wall0 < seconds:
            samples.append(memory(proc.pid)["rss_mb"])
            await asyncio.sleep(0.5)
        cpu = _cpu_s(proc.pid) - cpu0
        end = memory(proc.pid)
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            await asyncio.sleep(0.02)
        final = _status(state)
        if proc.returncode != 0 or "Traceback" in log.read_text():
            raise SystemExit(f"the control daemon failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
        return {"following_after_s": round(started_in, 2), "start_mb": first["rss_mb"],
                "end_mb": end["rss_mb"], "peak_mb": end["hwm_mb"], "max_sampled_mb": max(samples),
                "seconds": seconds, "tick_s": 1, "cpu_pct": round(cpu / seconds * 100, 2),
                "stopped_in": f"{final.get('mode')} ({final.get('reason')})",
                "sim_mode_after_stop": await sim.register(10)}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await sim.stop()
        shutil.rmtree(root, ignore_errors=True)


def _status(state: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((state / "public" / "control.json").read_text())
        return doc
    except (OSError, ValueError):
        return {}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    t, day, dmn = r["tick"], r["day"], r["daemon"]
    print("energy control: the executor against the emulated inverter (pymodbus on 127.0.0.1)")
    for kind, label in (("telemetry_only", "telemetry only"), ("with_readback", "+ read-back")):
        w, c = t[kind]["wall_ms"], t[kind]["cpu_ms"]
        print(f"  tick ({label:14}) wall median {w['median']:.2f} ms, p95 {w['p95']:.2f} ms; "
              f"CPU median {c['median']:.2f} ms (the emulated inverter's side included)")
    print(f"  a winter day's plan (modes {day['plan_modes']}, {day['slot_changes']} slot changes), "
          f"{day['ticks']} ticks of {day['tick_s']:g} s simulated in {day['simulated_in_s']:g} s:")
    print(f"    register writes: {day['writes']} (sim-inverter), {day['deye_writes']} (Deye SG0xLP1 "
          f"profile, same decisions); ticks by mode {day['ticks_by_mode']}; end SoC "
          f"{day['end_soc_pct']:g} %; alarms {day['alarms'] or 'none'}")
    print(f"  daemon (`edgepair pi run control`, tick 1 s): following after {dmn['following_after_s']:g} s;"
          f" RSS start {dmn['start_mb']:.1f} MB, end {dmn['end_mb']:.1f} MB, peak {dmn['peak_mb']:.1f} MB;"
          f" CPU {dmn['cpu_pct']:g} % over {dmn['seconds']:g} s; SIGTERM → {dmn['stopped_in']}, "
          f"inverter mode register {dmn['sim_mode_after_stop']}")
    print(machine_line(r["machine"]) + " (2 shared cores: timings are noisy)")
    for target in targets:
        print("  " + target.line())


if __name__ == "__main__":
    sys.exit(main())
