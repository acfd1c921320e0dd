"""``edgepair demo`` end to end, as a newcomer runs it: wake, DNS flip, inbox, the host
sleeping by itself, a demand wake, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import pytest

from handshake import demo
from tests.e2e import resolve, spawn, stop, wait_http, wait_state
from tests.helpers import free_port

# Spawning the demo imports every daemon (kasa, pymodbus, aiohttp) before it listens.
START_TIMEOUT_S = 30.0


IDLE_S = 5.0


def _wakes(public: Path) -> dict[str, int]:
    try:
        days = json.loads((public / "usage.json").read_text())["days"]
    except (OSError, ValueError, KeyError):
        return {}
    totals: dict[str, int] = {}
    for day in days:
        for reason, n in day["wakes"].items():
            if n:
                totals[reason] = totals.get(reason, 0) + n
    return totals


async def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not seen in {timeout} s")
        await asyncio.sleep(0.1)


async def test_demo_wakes_the_host_flips_dns_delivers_the_inbox_and_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(demo.IDLE_ENV, str(IDLE_S))
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    proc = spawn("demo", "--dir", str(tmp_path / "demo"), "--port", str(port), log=log)
    try:
        await wait_http(api + "/api/v1/health", timeout=START_TIMEOUT_S)
        await _wait_for(lambda: "edgepair demo is running" in log.read_text(), START_TIMEOUT_S,
                        "the banner")
        assert await resolve("nas.home.arpa", demo.DNS_PORT) == demo.PI_ADDRESS

        # A second demo finds the ports taken: one clear line and exit 1, no traceback.
        second_log = tmp_path / "second.log"
        second = spawn("demo", "--dir", str(tmp_path / "second"), "--port", str(free_port()),
                       log=second_log)
        assert await asyncio.to_thread(second.wait, START_TIMEOUT_S) == 1
        said = second_log.read_text()
        assert f"cannot listen for DNS on 127.0.0.1:{demo.DNS_PORT}" in said, said
        assert "is another demo running?" in said
        assert "Traceback" not in said

        (tmp_path / "demo" / "inbox" / "report.txt").write_text("quarterly figures\n")

        async with aiohttp.ClientSession() as session, \
                session.post(api + "/api/v1/wake") as resp:
            assert resp.status == 202  # accepted: the packet is sent, the boot is to come
            assert (await resp.json())["sent"] is True
        await wait_state(api, "online", timeout=demo.BOOT_S + 10)
        assert await resolve("nas.home.arpa", demo.DNS_PORT) == demo.HOST_ADDRESS

        delivered = tmp_path / "demo" / "host-inbox" / "report.txt"
        await _wait_for(delivered.exists, 15, "the inbox file on the host")
        assert delivered.read_text() == "quarterly figures\n"
        await _wait_for(lambda: not (tmp_path / "demo" / "inbox" / "report.txt").exists(), 5,
                        "the Pi's copy removed")

        public = tmp_path / "demo" / "pi-state" / "public"
        await _wait_for((public / "power.json").exists, 15, "power.json")
        power = json.loads((public / "power.json").read_text())
        assert {plug["name"] for plug in power["plugs"]} == {"nas", "fridge"}
        control = json.loads((public / "control.json").read_text())
        assert control["mode"] in {"following", "safe"}
        # The host came online: the Pi's state went to it as a backup, and pi.json says so.
        backups = tmp_path / "demo" / "host-state" / "backups"
        await _wait_for(lambda: list(backups.glob("edgepair-pi-*.tar.gz")), 20, "the Pi's backup")
        await _wait_for(lambda: (json.loads((public / "pi.json").read_text()).get("backup")
                                 or {}).get("last_ok"), 15, "the backup in pi.json")
        assert "share" in json.loads((public / "pi.json").read_text())["shares"]

        # Nothing to do: the host's idle loop suspends it by itself, and a LAN client that
        # asks for its name wakes it again.
        await wait_state(api, "offline", timeout=IDLE_S + 20)
        assert await resolve("nas.home.arpa", demo.DNS_PORT) == demo.PI_ADDRESS
        await dns.asyncquery.udp(dns.message.make_query("nas.home.arpa", "A"), "127.0.0.1",
                                 port=demo.DNS_PORT, source=demo.CLIENT_ADDRESS, timeout=2)
        await wait_state(api, "online", timeout=demo.BOOT_S + 10)
        await _wait_for(lambda: _wakes(public) == {"api": 1, "demand:dns": 1}, 70,
                        "both wakes in usage.json")
    finally:
        rc = stop(proc, signal.SIGTERM)
    # SIGTERM stops the whole demo (not only the simulated host's agent), cleanly.
    assert rc == 0, log.read_text()[-3000:]
