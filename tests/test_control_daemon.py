"""The control daemon as a process (``python -m handshake pi run control``) against the emulated inverter."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from handshake.util import atomic
from pi.config import load
from pi.control import daemon
from pi.control.plan import PLAN_FILE, SLOT_S
from pi.sim import inverter as inv
from pi.sim.inverter import EmulatedInverter
from tests.e2e import spawn
from tests.helpers import pi_toml
from tests.test_control_support import LIMITS, SIM, plan_doc, running_sim, sim_config

CHARGE = {"battery_mode": "charge", "power_w": 2000, "soc_target": 80}


@pytest.fixture
async def sim() -> AsyncIterator[EmulatedInverter]:
    async for inverter in running_sim():
        yield inverter


def control_toml(tmp_path: Path, port: int, tick_s: float = 5.0) -> Path:
    return pi_toml(tmp_path, extra=f"""
[control]
profile = "sim-inverter"
address = "127.0.0.1"
port = {port}
tick_s = {tick_s}
verify_s = {tick_s}
settle_s = 0
timeout_s = 0.5
""")


async def until(what: str, check: Callable[[], Any], proc: subprocess.Popen[bytes], log: Path,
                timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not await check():
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) waiting for {what}:\n"
                                 f"{log.read_text()[-3000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"{what} not within {timeout} s:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.02)


async def terminate(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM and wait without blocking the loop (the inverter runs in it)."""
    proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + 20
    while proc.poll() is None:
        if time.monotonic() > end:
            proc.kill()
            proc.wait()
            raise AssertionError("the daemon did not stop within 20 s of SIGTERM")
        await asyncio.sleep(0.02)
    return proc.returncode


def status(state_dir: Path) -> dict[str, Any]:
    return atomic.read_json(state_dir / "public" / "control.json") or {}


async def test_follows_reloads_on_change_restarts_mid_plan_and_leaves_safe_on_sigterm(
        tmp_path: Path, sim: EmulatedInverter) -> None:
    config_path = control_toml(tmp_path, sim.port)
    state = tmp_path / "state"
    start = datetime.fromtimestamp(time.time() // SLOT_S * SLOT_S, UTC)
    atomic.write_json(state / "private" / PLAN_FILE, plan_doc(start, [CHARGE] * 4))
    log = tmp_path / "control.log"
    proc = spawn("pi", "run", "control", "--config", str(config_path), log=log)
    try:
        async def mode_is(value: int) -> bool:
            return await sim.register(inv.MODE) == value and status(state).get("mode") == "following"

        await until("following the charge slot", lambda: mode_is(2), proc, log)
        assert status(state)["plan"]["id"] == "p1"
        # A new plan lands (as the api daemon writes it): the watcher reacts before the next 5 s tick.
        atomic.write_json(state / "private" / PLAN_FILE,
                          plan_doc(start, [{"battery_mode": "hold"}] * 4, seq=2, plan_id="p2"))
        changed = time.monotonic()
        await until("following the new plan", lambda: mode_is(1), proc, log, timeout=4)
        assert time.monotonic() - changed < 4
        assert await terminate(proc) == 0
        assert await sim.register(inv.MODE) == 0  # the safe state, written before exit
        assert await sim.register(inv.SOC_TARGET) == 100
        assert (status(state)["mode"], status(state)["reason"]) == ("safe", "stopped")

        writes = len(sim.writes)
        proc = spawn("pi", "run", "control", "--config", str(config_path), log=log)
        await until("following again after a restart", lambda: mode_is(1), proc, log)
        assert status(state)["plan"]["id"] == "p2"  # the stored plan, reloaded
        assert len(sim.writes) == writes + 1  # only the mode register differed
        assert await terminate(proc) == 0
        assert await sim.register(inv.MODE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stored_plan_that_is_not_valid_here_is_ignored(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / PLAN_FILE
    control = sim_config(502)
    assert daemon.load_plan(path, control) is None  # none yet
    path.write_text("{broken")
    assert daemon.load_plan(path, control) is None
    too_much = plan_doc(slots=[{**CHARGE, "power_w": LIMITS.max_charge_w + 1}])
    path.write_text(json.dumps(too_much))
    assert daemon.load_plan(path, control) is None
    assert "slots[0].power_w" in caplog.text
    path.write_text(json.dumps(plan_doc()))
    plan = daemon.load_plan(path, control)
    assert plan is not None
    assert plan.id == "p1"


def test_baselines_load_per_device(tmp_path: Path) -> None:
    assert daemon.load_baselines(tmp_path) == {}
    atomic.write_json(tmp_path / daemon.BASELINE_FILE, {
        "schema": daemon.BASELINE_SCHEMA, "devices": {"inverter": {"registers": {"mode": 1}}}})
    assert daemon.load_baselines(tmp_path) == {"inverter": {"mode": 1}}


def test_a_baseline_of_another_device_or_profile_is_not_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    control = sim_config(1502)
    here = {"address": "127.0.0.1", "port": 1502, "device_id": control.device_id}
    doc = {"schema": daemon.BASELINE_SCHEMA, "profile": "sim-inverter", "device": here,
           "devices": {"inverter": {"registers": {"mode": 1}}}}
    atomic.write_json(tmp_path / daemon.BASELINE_FILE, doc)
    assert daemon.load_baselines(tmp_path, control) == {"inverter": {"mode": 1}}
    atomic.write_json(tmp_path / daemon.BASELINE_FILE, {**doc, "device": {**here, "port": 502}})
    assert daemon.load_baselines(tmp_path, control) == {}
    atomic.write_json(tmp_path / daemon.BASELINE_FILE, {**doc, "profile": "deye-sg-lp1"})
    assert daemon.load_baselines(tmp_path, control) == {}
    assert "run `edgepair control commission --force`" in caplog.text


def test_without_a_control_section_the_daemon_refuses(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    with pytest.raises(Exception, match=r"\[control\]: section missing"):
        asyncio.run(daemon.run(config))
    assert SIM.name == "sim-inverter"
