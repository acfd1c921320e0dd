"""Wake on demand through the real api daemon: DNS (direct and through a real dnsmasq with
add-subnet), a plain port and the waking page; denied clients, quiet hours, min_interval."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message

from pi.wol import REPEAT_GAP_S
from tests.e2e import Site, status, stop, wait_http, wait_state
from tests.helpers import free_port

NAME = "nas.home.arpa"
ALLOWED = "127.0.0.5"
DENIED = "127.0.0.66"
# Demand wakes must not wait for a slow test machine: the magic packet is prompt.
PACKET_S = 3.0


class MagicListener(asyncio.DatagramProtocol):
    """The simulated host's NIC: counts magic packets for the site's MAC, and who it was."""

    def __init__(self, mac: str) -> None:
        self.magic = bytes.fromhex("ff" * 6 + mac.replace(":", "") * 16)
        self.packets: list[float] = []
        self.arrived = asyncio.Event()

    @property
    def wakes(self) -> int:
        """Wakes, not packets: the Pi sends each wake as a burst of REPEATS packets."""
        return sum(1 for i, t in enumerate(self.packets)
                   if i == 0 or t - self.packets[i - 1] > 4 * REPEAT_GAP_S)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data == self.magic:
            self.packets.append(time.monotonic())
            self.arrived.set()

    async def next(self, timeout: float = PACKET_S) -> bool:
        """True when a magic packet arrives within ``timeout``."""
        self.arrived.clear()
        try:
            async with asyncio.timeout(timeout):
                await self.arrived.wait()
        except TimeoutError:
            return False
        return True


@contextlib.asynccontextmanager
async def listening(site: Site) -> AsyncIterator[MagicListener]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: MagicListener(site.MAC), local_addr=("127.0.0.1", site.wol_port))
    try:
        yield protocol
    finally:
        transport.close()


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop(proc)


async def query(site: Site, source: str, port: int | None = None, server: str = "127.0.0.1",
                rdtype: str = "A") -> dns.message.Message:
    return await dns.asyncquery.udp(dns.message.make_query(NAME, rdtype), server,
                                    port=port or site.dns_port, source=source, timeout=2)


def demand_site(tmp_path: Path, **keys: str) -> Site:
    lines = "\n".join(f"{k} = {v}" for k, v in {
        "dns": "true", "clients": '["127.0.0.0/8"]', "deny": f'["{DENIED}/32"]',
        "min_interval_s": "600", **keys}.items())
    return Site(tmp_path, extra_pi=f"[wake_on_demand]\n{lines}\n")


async def test_a_query_from_an_allowed_client_wakes_the_host_once(tmp_path: Path) -> None:
    site = demand_site(tmp_path)
    async with listening(site) as nic:
        with running(site.start_pi()):
            await wait_http(site.api + "/api/v1/health")
            await wait_state(site.api, "offline")
            # The Pi's own forwarder address without a client subnet, a denied client:
            # answered, but nobody is woken.
            answer = await query(site, "127.0.0.1")
            assert str(answer.answer[0][0]) == Site.PI_ADDRESS
            await query(site, DENIED)
            assert not await nic.next(1.0)
            started = time.monotonic()
            await query(site, ALLOWED)
            assert await nic.next(), "an allowed client's query sent no magic packet"
            assert nic.packets[-1] - started < 1.0
            doc = await status(site.api)
            for _ in range(50):  # the last of the magic packet's repeats is still going out
                if doc["last_wake"] is not None:
                    break
                await asyncio.sleep(0.05)
                doc = await status(site.api)
            assert doc["last_wake"]["client"] == ALLOWED  # type: ignore[index]
            assert doc["last_wake"]["source"] == "demand:dns"  # type: ignore[index]
            assert doc["demand"]["verdicts"]["denied"] == 1  # type: ignore[index]
            # The simulated host boots on it; the Pi sees it online.
            with running(site.start_host()):
                took = await wait_state(site.api, "online", timeout=15)
                assert took < 10
                proc = site.notify("going-offline", "--reason", "suspend")
                assert proc.returncode == 0, proc.stderr
            await wait_state(site.api, "offline", timeout=10)
            # min_interval_s: the same client again soon after is not a new wake.
            await query(site, ALLOWED)
            await query(site, ALLOWED, rdtype="AAAA")
            assert not await nic.next(1.5)
            assert nic.wakes == 1
    log = (tmp_path / "pi.log").read_text()
    assert f"waking the host: demand:dns from {ALLOWED}" in log
    assert "Traceback" not in log


async def test_quiet_hours_serve_no_demand(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    span = f'"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"'
    site = demand_site(tmp_path, quiet_hours=span)
    site.pi_config.write_text(site.pi_config.read_text() + '[schedule]\ntimezone = "UTC"\n')
    async with listening(site) as nic:
        with running(site.start_pi()):
            await wait_http(site.api + "/api/v1/health")
            await query(site, ALLOWED)
            assert not await nic.next(1.5)
    assert "quiet hours" in (tmp_path / "pi.log").read_text()


@contextlib.asynccontextmanager
async def dnsmasq(tmp_path: Path, upstream: int) -> AsyncIterator[int]:
    """A real dnsmasq on loopback that forwards the zone to the builtin responder and names
    the client in EDNS Client Subnet, as the README tells Pi-hole users to configure."""
    port = free_port(2)
    proc = await asyncio.create_subprocess_exec(
        "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
        "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
        f"--server=/home.arpa/127.0.0.1#{upstream}", "--add-subnet=32,128",
        "--cache-size=0", "--user=root", "--pid-file=", "--conf-file=/dev/null",
        f"--log-facility={tmp_path / 'dnsmasq.log'}", "--log-queries",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(100):
            with contextlib.suppress(Exception):
                await dns.asyncquery.udp(dns.message.make_query("x.invalid", "A"), "127.0.0.1",
                                         port=port, timeout=0.2)
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def test_through_a_real_dnsmasq_the_client_is_the_one_it_names(tmp_path: Path) -> None:
    site = demand_site(tmp_path)
    async with listening(site) as nic:
        with running(site.start_pi()):
            await wait_http(site.api + "/api/v1/health")
            async with dnsmasq(tmp_path, site.dns_port) as port:
                answer = await query(site, DENIED, port=port)
                assert str(answer.answer[0][0]) == Site.PI_ADDRESS  # forwarded and answered
                assert not await nic.next(1.0), "the denied client behind dnsmasq woke the host"
                await query(site, "127.0.0.7", port=port)
                assert await nic.next()
    log = (tmp_path / "pi.log").read_text()
    assert "waking the host: demand:dns from 127.0.0.7" in log
    assert f"{DENIED} is in wake_on_demand.deny" in log


async def test_a_connection_to_a_port_and_the_waking_page(tmp_path: Path) -> None:
    tcp, web_port = free_port(), free_port()
    site = demand_site(tmp_path, dns="false", ports=f"[{tcp}]", http_ports=f"[{web_port}]",
                       min_interval_s="0")
    async with listening(site) as nic:
        with running(site.start_pi()):
            await wait_http(site.api + "/api/v1/health")
            page = f"http://{Site.PI_ADDRESS}:{web_port}"
            await wait_http(page + "/.well-known/edgepair/waking")
            # A plain port: the connection is the demand, nothing is spoken.
            reader, writer = await asyncio.open_connection(Site.PI_ADDRESS, tcp,
                                                           local_addr=(ALLOWED, 0))
            assert await reader.read() == b""
            writer.close()
            assert await nic.next()
            async with aiohttp.ClientSession() as http:
                async with http.get(page + "/photos/?a=1") as r:
                    assert r.status == 503
                    assert r.headers["Retry-After"] == "5"
                    text = await r.text()
                    assert f"Waking {NAME}" in text
                    assert "/.well-known/edgepair/waking" in text
                async with http.get(page + "/.well-known/edgepair/waking") as r:
                    assert (await r.json())["state"] in ("waking", "offline")
                # Junk on the HTTP port is closed, not a 500 and not a crash.
                reader, writer = await asyncio.open_connection(Site.PI_ADDRESS, web_port)
                writer.write(b"\x16\x03\x01 not http\r\n\r\n")
                assert await reader.read() == b""
                writer.close()
                with running(site.start_host()):
                    await wait_state(site.api, "online", timeout=15)
                    async with http.get(page + "/.well-known/edgepair/waking") as r:
                        assert await r.json() == {
                            "state": "online",
                            "url": f"http://{Site.HOST_ADDRESS}:{web_port}/.well-known/edgepair/waking"}
                    async with http.get(page + "/photos/?a=1", allow_redirects=False) as r:
                        assert r.status == 307
                        assert r.headers["Location"] == (
                            f"http://{Site.HOST_ADDRESS}:{web_port}/photos/?a=1")
    log = (tmp_path / "pi.log").read_text()
    assert f"waking the host: demand:port from {ALLOWED}" in log
    assert "Traceback" not in log


async def test_a_port_that_is_taken_is_named_and_the_rest_goes_on(tmp_path: Path) -> None:
    taken = free_port()
    holder = await asyncio.start_server(lambda r, w: w.close(), Site.PI_ADDRESS, taken)
    free = free_port()
    site = demand_site(tmp_path, ports=f"[{taken}, {free}]")
    try:
        async with listening(site) as nic:
            with running(site.start_pi()):
                await wait_http(site.api + "/api/v1/health")
                for _ in range(50):
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection(
                            Site.PI_ADDRESS, free, local_addr=(ALLOWED, 0))
                        writer.close()
                        break
                    await asyncio.sleep(0.1)
                assert await nic.next()
    finally:
        holder.close()
    log = (tmp_path / "pi.log").read_text()
    assert f"cannot listen for demand on {Site.PI_ADDRESS}:{taken}: another program holds " \
           "the port" in log

