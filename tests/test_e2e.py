"""End to end: the real host agent and the real Pi api daemon as processes on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import wakeonlan

from handshake.client import HandshakeClient
from tests.e2e import Site, resolve, status, stop, wait_dns, wait_http, wait_state
from tests.helpers import KEY


async def test_failover_end_to_end(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2, fall=3, rise=2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", site.wol_port))
    udp.setblocking(False)
    pi = site.start_pi()
    host = site.start_host()
    try:
        await wait_http(site.api + "/api/v1/health")
        await wait_http(site.host_url + "/api/v1/health")
        # The host answers heartbeats: online after `rise`, DNS → host.
        await wait_state(site.api, "online")
        assert await resolve("nas.home.arpa", site.dns_port) == site.HOST_ADDRESS

        # 1. going-offline with a snapshot: DNS → Pi within 1 s, snapshot.json holds it.
        start = time.monotonic()
        done = await asyncio.to_thread(site.notify, "going-offline", "--reason", "suspend")
        assert done.returncode == 0, done.stderr.decode()
        # The Pi acknowledges only once DNS has switched: the answer is the Pi's already.
        assert await resolve("nas.home.arpa", site.dns_port) == site.PI_ADDRESS
        assert time.monotonic() - start < 5  # includes the CLI's Python start-up
        snap = json.loads((tmp_path / "pi-state/public/snapshot.json").read_text())
        assert snap["reason"] == "suspend"
        assert snap["snapshot"]["volumes"][0]["path"] == str(tmp_path)
        assert (await status(site.api))["state"] == "going_offline"
        sent = json.loads((tmp_path / "host-state/public/snapshot-sent.json").read_text())
        assert sent["snapshot"] == snap["snapshot"]
        stop(host, signal.SIGKILL)
        await wait_state(site.api, "offline", timeout=3)

        # 2. The host comes back unannounced: online after `rise`, DNS → host.
        host = site.start_host()
        await wait_state(site.api, "online", timeout=10)
        await wait_dns("nas.home.arpa", site.dns_port, site.HOST_ADDRESS, timeout=1.0)

        # 3. Killed without notice: unreachable after fall × interval, DNS → Pi.
        stop(host, signal.SIGKILL)
        t = await wait_state(site.api, "unreachable", timeout=5)
        assert (site.fall - 1) * site.interval <= t <= site.fall * site.interval + 1.0
        assert await resolve("nas.home.arpa", site.dns_port) == site.PI_ADDRESS
        doc = await status(site.api)
        assert doc["alarm"] is not None

        # 3b. Back from unreachable unannounced (a crash and reboot): online after `rise`
        # good heartbeats, DNS → host, alarm resolved; then killed again.
        host = site.start_host()
        await wait_state(site.api, "online", timeout=10)
        assert await resolve("nas.home.arpa", site.dns_port) == site.HOST_ADDRESS
        assert (await status(site.api))["alarm"] is None
        stop(host, signal.SIGKILL)
        await wait_state(site.api, "unreachable", timeout=5)

        # 4. Wake: a signed POST → a valid 102-byte magic packet for the MAC on 127.0.0.1.
        async with HandshakeClient(site.api, KEY) as client:
            answer = await client.request("POST", "/api/v1/wake", {"source": "api"})
        assert answer["sent"] is True
        loop = asyncio.get_running_loop()
        packet = await asyncio.wait_for(loop.sock_recv(udp, 1024), timeout=2)
        assert len(packet) == 102
        assert packet == wakeonlan.create_magic_packet(site.MAC)
        assert (await status(site.api))["state"] == "waking"

        # 5. The host boots and says so: online, DNS → host.
        host = site.start_host()
        await wait_http(site.host_url + "/api/v1/health")
        done = await asyncio.to_thread(site.notify, "coming-online")
        assert done.returncode == 0, done.stderr.decode()
        await wait_state(site.api, "online", timeout=2)
        assert await resolve("nas.home.arpa", site.dns_port) == site.HOST_ADDRESS
    finally:
        udp.close()
        stop(host)
        code = stop(pi)
    assert code == 0, (tmp_path / "pi.log").read_text()
    assert "Traceback" not in (tmp_path / "pi.log").read_text()


async def test_state_survives_a_restart_of_the_pi(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2)
    pi = site.start_pi()
    host = site.start_host()
    try:
        await wait_http(site.api + "/api/v1/health")
        await wait_http(site.host_url + "/api/v1/health")
        await wait_state(site.api, "online", timeout=15)
        since = (await status(site.api))["since"]
        stop(pi)
        pi = site.start_pi()
        await wait_http(site.api + "/api/v1/health")
        doc = await status(site.api)
        assert (doc["state"], doc["since"]) == ("online", since)
        # The restored state is asserted in DNS at once, before any heartbeat.
        assert await resolve("nas.home.arpa", site.dns_port) == site.HOST_ADDRESS
    finally:
        stop(host)
        stop(pi)


async def test_notify_without_a_pi_fails_clearly(tmp_path: Path) -> None:
    site = Site(tmp_path)
    done = await asyncio.to_thread(site.notify, "going-offline", "--reason", "shutdown",
                                   "--deadline", "0.5")
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "no acknowledgement from the Pi" in err
    assert site.api in err
    assert "Traceback" not in err
