"""Slow and many clients must not starve the api daemon (#10 §1), through the real daemons.

Measured before the guard: under ``ulimit -n 1024``, 1,100 clients that send their headers
and never their body left every ``/api/v1/status`` failing, and the daemon exited on
EMFILE while writing pi.json.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.e2e import ROOT, Site, status, stop, wait_dns, wait_http, wait_state

SLOW_CLIENTS = 1100
SOURCES = 50  # 127.0.1.1-50: 22 connections each, like a handful of misbehaving LAN hosts
NOFILE = 1024


Slow = tuple[asyncio.StreamReader, asyncio.StreamWriter, float]


async def _slow_client(port: int, source: str, complete_headers: bool) -> Slow:
    return await _connect_slow("127.0.0.1", port, source, complete_headers)


async def _connect_slow(address: str, port: int, source: str, complete_headers: bool) -> Slow:
    """Headers of a 100 kB body and its first bytes, then nothing (or headers that never
    end): the connection just sits there. The writer is kept: dropping it closes it."""
    reader, writer = await asyncio.open_connection(address, port, local_addr=(source, 0))
    head = (b"POST /api/v1/wake HTTP/1.1\r\nHost: pi\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n")
    writer.write(head + b"\r\n{\"source\"" if complete_headers else head + b"X-Slow: 1")
    await writer.drain()
    return reader, writer, time.monotonic()


async def _closed_after(reader: asyncio.StreamReader, opened: float, limit: float) -> float | None:
    """Seconds until the server closed the connection (None if still open at ``limit``)."""
    try:
        async with asyncio.timeout(max(0.0, opened + limit - time.monotonic())):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - opened


async def _status_latencies(api: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        # A new connection each time: a new client must get in while the slow ones sit.
        async with aiohttp.ClientSession() as session:
            start = time.monotonic()
            async with session.get(api + "/api/v1/status",
                                   timeout=aiohttp.ClientTimeout(total=5)) as r:
                assert r.status == 200
                await r.json()
            times.append(time.monotonic() - start)
        await asyncio.sleep(0.05)
    return times


def _start_limited_pi(site: Site) -> subprocess.Popen[bytes]:
    """The api daemon under the soft descriptor limit systemd gives a unit by default."""
    with (site.root / "pi.log").open("ab") as out:
        return subprocess.Popen(
            ["/bin/sh", "-c", f'ulimit -n {NOFILE} && exec "$0" "$@"', sys.executable, "-m",
             "handshake", "pi", "run", "api", "--config", str(site.pi_config)],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out, stderr=subprocess.STDOUT)


async def test_1100_slow_clients_under_ulimit_1024_do_not_starve_the_api_daemon(
        tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # the test's own sockets
    site = Site(tmp_path, interval=0.2, fall=3)
    host = site.start_host()
    pi = _start_limited_pi(site)
    slow: list[Slow] = []
    try:
        await wait_http(site.api + "/api/v1/health")
        await wait_state(site.api, "online", timeout=15)
        results = await asyncio.gather(
            *(_slow_client(site.api_port, f"127.0.1.{i % SOURCES + 1}", complete_headers=i % 2 == 0)
              for i in range(SLOW_CLIENTS)),
            return_exceptions=True)
        slow = [r for r in results if isinstance(r, tuple)]
        assert len(slow) > SLOW_CLIENTS * 0.9, [r for r in results if not isinstance(r, tuple)][:3]
        await asyncio.sleep(1.0)

        latencies = await _status_latencies(site.api, 20)
        assert statistics.median(latencies) < 0.1, latencies

        # Failover still happens within its bound: fall × (interval + timeout) and a little.
        stop(host)
        took = await wait_dns("nas.home.arpa", site.dns_port, Site.PI_ADDRESS, timeout=5)
        assert took < 3 * (0.2 + 0.2) + 1.5, took

        closed = await asyncio.gather(*(_closed_after(r, t, 30.0) for r, _, t in slow))
        still_open = sum(1 for c in closed if c is None)
        assert still_open == 0, f"{still_open} slow connections still open after 30 s"
        assert pi.poll() is None, "the api daemon exited"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        stop(host)
        code = stop(pi)
    log = (site.root / "pi.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Too many open files" not in log
    assert "Traceback" not in log, log[-3000:]
    # Refusals and closes are each a line a minute, not one per connection.
    assert log.count("refused a connection") <= 2, log[-3000:]
    assert log.count("closed a connection") <= 2, log[-3000:]


async def test_clients_that_drop_mid_body_or_send_garbage_are_one_line_not_a_flood(
        tmp_path: Path) -> None:
    site = Site(tmp_path)
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        for i in range(30):
            _reader, writer = await asyncio.open_connection("127.0.0.1", site.api_port)
            if i % 2:  # an anonymous wake whose client goes away mid-body
                writer.write(b"POST /api/v1/wake HTTP/1.1\r\nHost: pi\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 50\r\n\r\n{\"source\": ")
            else:  # not HTTP at all
                writer.write(b"\x16\x03\x01\x02\x00 not http\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.close()
        await asyncio.sleep(0.3)
        assert (await _status_latencies(site.api, 1))[0] < 5
    finally:
        code = stop(pi)
    log = (site.root / "pi.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "ERROR" not in log, log[-3000:]
    assert log.count("closed the connection mid-request") == 1, log[-3000:]


async def test_slow_clients_on_the_host_agent_do_not_make_the_pi_lose_the_host(
        tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    site = Site(tmp_path, interval=0.2, fall=3)
    with (site.root / "host.log").open("ab") as out:
        host = subprocess.Popen(  # the agent under the same soft limit of 1024
            ["/bin/sh", "-c", f'ulimit -n {NOFILE} && exec "$0" "$@"', sys.executable, "-m",
             "handshake", "host", "run", "--config", str(site.host_config)],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out,
            stderr=subprocess.STDOUT)
    pi = site.start_pi()
    slow: list[Slow] = []
    try:
        await wait_http(site.api + "/api/v1/health")
        await wait_state(site.api, "online", timeout=15)
        host_port = int(site.host_url.rsplit(":", 1)[1])
        results = await asyncio.gather(*(
            _connect_slow(Site.HOST_ADDRESS, host_port, f"127.0.1.{i % SOURCES + 1}", i % 2 == 0)
            for i in range(SLOW_CLIENTS)), return_exceptions=True)
        slow = [r for r in results if isinstance(r, tuple)]
        assert len(slow) > SLOW_CLIENTS * 0.9
        await asyncio.sleep(3.0)  # 15 heartbeat intervals under the load
        assert (await status(site.api))["state"] == "online"
        assert "online → " not in (site.root / "pi.log").read_text(), "the Pi lost the host"
        assert host.poll() is None
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for _, writer, _ in slow:
            writer.close()
        stop(pi)
        code = stop(host)
    log = (site.root / "host.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
