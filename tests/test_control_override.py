"""Manual override end to end: the real api and control daemons (one process) against the
emulated inverter (a real pymodbus server on 127.0.0.1), through the signed API and the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handshake.client import HandshakeClient
from handshake.errors import RequestError
from handshake.util import atomic
from handshake.util.timeutil import iso
from pi.control.plan import PLAN_FILE, SLOT_S
from pi.sim import inverter as inv
from pi.sim.inverter import EmulatedInverter
from tests.e2e import ROOT, spawn, wait_http
from tests.helpers import KEY, free_port, pi_toml
from tests.test_control_daemon import status, terminate, until
from tests.test_control_support import plan_doc, running_sim

PATH = "/api/v1/control/override"


@pytest.fixture
async def sim() -> AsyncIterator[EmulatedInverter]:
    async for inverter in running_sim():
        yield inverter


def config(tmp_path: Path, sim_port: int, api_port: int) -> Path:
    return pi_toml(tmp_path, api_port=api_port, extra=f"""
[control]
profile = "sim-inverter"
address = "127.0.0.1"
port = {sim_port}
tick_s = 0.1
verify_s = 0.1
settle_s = 0
timeout_s = 0.5
soc_max_pct = 95
max_charge_w = 3000
history_commit_s = 0.5
""")


def later(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds)) or ""


async def post(url: str, body: dict[str, Any], *, signed: bool = True) -> Any:
    async with HandshakeClient(url, KEY) as client:
        return await client.request("POST", PATH, body, signed=signed)


async def refused(url: str, body: dict[str, Any], *, signed: bool = True) -> RequestError:
    with pytest.raises(RequestError) as caught:
        await post(url, body, signed=signed)
    return caught.value


async def test_every_mode_limits_expiry_restart_and_the_cli(tmp_path: Path,
                                                            sim: EmulatedInverter) -> None:
    api_port = free_port()
    config_path = config(tmp_path, sim.port, api_port)
    url = f"http://127.0.0.1:{api_port}"
    state = tmp_path / "state"
    start = datetime.fromtimestamp(time.time() // SLOT_S * SLOT_S, UTC)
    atomic.write_json(state / "private" / PLAN_FILE,
                      plan_doc(start, [{"battery_mode": "hold"}] * 8))
    log = tmp_path / "pi.log"
    proc = spawn("pi", "run", "api", "control", "--config", str(config_path), log=log)
    try:
        await wait_http(url + "/api/v1/health")

        async def registers(**want: int) -> bool:
            return all([await sim.register(getattr(inv, k.upper())) == v for k, v in want.items()])

        def reason_is(reason: str, mode: str = "following") -> Any:
            async def check() -> bool:
                doc = status(state)
                return doc.get("reason") == reason and doc.get("mode") == mode
            return check

        await until("following the plan's hold", reason_is("following"), proc, log)
        assert await sim.register(inv.MODE) == inv.HOLD

        # Refused: unsigned, past a hard limit (named), too long, incomplete.
        assert (await refused(url, {"mode": "hold", "until": later(60)}, signed=False)).status == 401
        error = await refused(url, {"mode": "charge", "until": later(60), "power_w": 4000,
                                    "target_soc": 80})
        assert error.status == 400
        assert "max_charge_w" in str(error)
        error = await refused(url, {"mode": "charge", "until": later(60), "power_w": 2000,
                                    "target_soc": 99})
        assert "soc_max_pct" in str(error)
        assert "until" in str(await refused(url, {"mode": "hold", "until": later(25 * 3600)}))
        assert "until" in str(await refused(url, {"mode": "hold"}))
        assert "target_soc" in str(await refused(url, {"mode": "charge", "until": later(60),
                                                       "power_w": 2000}))
        assert not (state / "private" / "override.json").exists()  # nothing refused is stored

        # Every mode, read back from the inverter's registers.
        await post(url, {"mode": "charge", "until": later(300), "power_w": 2000, "target_soc": 80})
        await until("charging by hand", lambda: registers(mode=inv.CHARGE, charge_w=2000,
                                                          soc_target=80), proc, log)
        await until("control.json shows the override", reason_is("manual_override"), proc, log)
        shown = status(state)["override"]
        assert shown["mode"] == "charge"
        assert shown["until"]
        await post(url, {"mode": "discharge", "until": later(300), "power_w": 1500})
        await until("discharging by hand", lambda: registers(mode=inv.DISCHARGE, discharge_w=1500),
                    proc, log)
        await post(url, {"mode": "safe", "until": later(300)})
        await until("the safe state by hand", reason_is("manual_override", "safe"), proc, log)
        assert await sim.register(inv.MODE) == inv.NORMAL  # the safe state: the baseline
        await post(url, {"mode": "hold", "until": later(300)})
        await until("holding by hand", reason_is("manual_override"), proc, log)

        # auto ends it: back to the plan.
        assert (await post(url, {"mode": "auto"}))["override"] is None
        await until("back to the plan", reason_is("following"), proc, log)

        # It survives a restart until it expires.
        await post(url, {"mode": "charge", "until": later(120), "power_w": 1000, "target_soc": 90})
        await until("charging by hand", lambda: registers(mode=inv.CHARGE, charge_w=1000), proc, log)
        assert await terminate(proc) == 0
        assert await sim.register(inv.MODE) == inv.NORMAL  # safe on the way out
        proc = spawn("pi", "run", "api", "control", "--config", str(config_path), log=log)
        await until("the override again after a restart",
                    lambda: registers(mode=inv.CHARGE, charge_w=1000), proc, log)
        await until("control.json shows it again", reason_is("manual_override"), proc, log)

        # It ends by itself: back to the plan.
        await post(url, {"mode": "discharge", "until": later(1.5), "power_w": 800})
        await until("discharging by hand", lambda: registers(mode=inv.DISCHARGE), proc, log)
        await until("the plan after the override expired",
                    lambda: registers(mode=inv.HOLD), proc, log, timeout=10)
        await until("control.json shows the plan", reason_is("following"), proc, log)
        assert status(state)["override"] is None

        # The CLI signs and sends the same request; a refusal is said and exits 1.
        cli = [sys.executable, "-m", "handshake", "control", "override"]
        done = await asyncio.to_thread(subprocess.run, [*cli, "charge", "--until", "10m",
                                       "--power-w", "1200", "--target-soc", "85",
                                       "--config", str(config_path)],
                                       cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert "charge at 1200 W to 85 %" in done.stdout
        await until("charging from the CLI", lambda: registers(mode=inv.CHARGE, charge_w=1200),
                    proc, log)

        async def from_cli() -> bool:
            return (status(state).get("override") or {}).get("source") == "cli"

        await until("control.json shows the CLI's override", from_cli, proc, log)
        bad = await asyncio.to_thread(subprocess.run, [*cli, "discharge", "--until", "2h",
                                      "--power-w", "99999", "--config", str(config_path)],
                                      cwd=ROOT, capture_output=True, text=True, check=False)
        assert bad.returncode == 1
        assert "max_discharge_w" in bad.stderr
        assert await terminate(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
