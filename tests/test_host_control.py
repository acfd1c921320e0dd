"""Manual control from the host: ``edgepair host control override|replan`` through the real
host agent, which signs and forwards to the real Pi daemons (api + control) driving the
emulated inverter on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from handshake.util import atomic
from host import control
from pi.sim import inverter as inv
from pi.sim.inverter import EmulatedInverter
from tests.e2e import ROOT, spawn, stop, wait_http
from tests.helpers import free_port
from tests.test_control_daemon import status, until
from tests.test_control_override import config as pi_config
from tests.test_control_support import running_sim
from tests.test_planner_cli import host_toml


@pytest.fixture
async def sim() -> AsyncIterator[EmulatedInverter]:
    async for inverter in running_sim():
        yield inverter


def host_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "handshake", "host", "control", *args],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)


async def test_the_host_forwards_overrides_and_replans(tmp_path: Path,
                                                       sim: EmulatedInverter) -> None:
    api_port = free_port()
    pi_dir, host_dir = tmp_path / "pi", tmp_path / "host"
    pi_dir.mkdir()
    host_dir.mkdir()
    pi_path = pi_config(pi_dir, sim.port, api_port)
    pi_url = f"http://127.0.0.1:{api_port}"
    host_path = host_toml(host_dir, pi_url)
    agent_url = "http://" + host_path.read_text().split('listen = "', 1)[1].split('"', 1)[0]
    state = pi_dir / "state"
    pi = spawn("pi", "run", "api", "control", "--config", str(pi_path), log=tmp_path / "pi.log")
    host = spawn("host", "run", "--config", str(host_path), log=tmp_path / "host.log")
    try:
        await wait_http(pi_url + "/api/v1/health")
        await wait_http(agent_url + "/api/v1/health")
        done = await asyncio.to_thread(host_cli, "override", "charge", "--until", "30m",
                                       "--power-w", "1500", "--target-soc", "80",
                                       "--config", str(host_path))
        assert done.returncode == 0, done.stderr
        assert "charge at 1500 W to 80 %" in done.stdout

        async def charging() -> bool:
            return await sim.register(inv.MODE) == inv.CHARGE and \
                await sim.register(inv.CHARGE_W) == 1500

        await until("charging as the host asked", charging, pi, tmp_path / "pi.log")
        assert status(state)["override"]["source"] == "host"
        # The Pi's refusal, naming its hard limit, reaches the host's command line.
        bad = await asyncio.to_thread(host_cli, "override", "charge", "--until", "1h",
                                      "--power-w", "9999", "--target-soc", "80",
                                      "--config", str(host_path))
        assert bad.returncode == 1
        assert "max_charge_w" in bad.stderr
        ended = await asyncio.to_thread(host_cli, "override", "auto", "--config", str(host_path))
        assert ended.returncode == 0, ended.stderr
        assert not (state / "private" / "override.json").exists()

        # Replan now: the planner runs on the host and the Pi stores its plan.
        replanned = await asyncio.to_thread(host_cli, "replan", "--json",
                                            "--config", str(host_path))
        assert replanned.returncode == 0, replanned.stderr + (tmp_path / "host.log").read_text()
        stored = atomic.read_json(state / "private" / "plan.json")
        assert stored is not None
        assert '"id": "' + stored["id"] + '"' in replanned.stdout
        assert "import_eur_kwh" in stored["slots"][0]["forecast"]  # what the audit prices with

        async def following() -> bool:
            return (status(state).get("plan") or {}).get("id") == stored["id"]

        await until("the control daemon follows the new plan", following, pi, tmp_path / "pi.log")
    finally:
        assert stop(host) == 0
        stop(pi)


def test_manual_control_answers_loopback_clients_only() -> None:
    def request(peer: str, headers: dict[str, str] | None = None) -> object:
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: \
            (peer, 40000) if name == "peername" else default
        return make_mocked_request("POST", control.OVERRIDE_PATH, transport=transport,
                                   headers={"Host": "127.0.0.1:8771", **(headers or {})})

    refused = control._loopback(request("192.168.1.20"))  # type: ignore[arg-type]
    assert refused is not None
    assert refused.status == 403
    assert control._loopback(request("127.0.0.3")) is None  # type: ignore[arg-type]
    assert control._loopback(request("::1")) is None  # type: ignore[arg-type]
    # A page from elsewhere open in a browser on the host (CSRF) is refused; the agent's
    # own page and the CLI (no Origin) are not.
    for hostile in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://127.0.0.1:9999"}):
        refused = control._loopback(request("127.0.0.1", hostile))  # type: ignore[arg-type]
        assert refused is not None, hostile
        assert refused.status == 403
        assert b"cross_origin" in refused.body  # type: ignore[operator]
    own = {"Origin": "http://127.0.0.1:8771", "Sec-Fetch-Site": "same-origin"}
    assert control._loopback(request("127.0.0.1", own)) is None  # type: ignore[arg-type]
