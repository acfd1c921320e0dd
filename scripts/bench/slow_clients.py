#!/usr/bin/env python3
"""Benchmark the api daemon under many slow clients, with the soft descriptor limit of 1024.

The real api daemon runs under ``ulimit -n 1024`` (systemd's default soft LimitNOFILE)
beside a real host agent. ``--clients`` connections from ``--sources`` loopback addresses
(127.0.1.x) each send request headers and then nothing more (half a complete header block
with a body still to come, half headers that never end). Meanwhile a new client times
``/api/v1/status`` over fresh connections; the host agent is then stopped and the time
until DNS answers the Pi is measured. Reported: status latency before and under the
attack, how many slow connections were admitted, refused (503) and when the admitted ones
were closed, the daemon's RSS and descriptors, failover time, and whether it stayed up.

    .venv/bin/python scripts/bench/slow_clients.py [--clients 1100] [--sources 50] [--json]

Every packet goes to 127.0.0.0/8; all daemons stop on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from typing import Any

import aiohttp
from _common import (
    PI_ADDRESS,
    ROOT,
    BenchSite,
    Children,
    Target,
    emit_json,
    machine,
    machine_line,
    memory,
    resolve,
    run,
    summary,
    wait_for,
    wait_http,
)

NOFILE = 1024
STATUS_SAMPLES = 40
CLOSE_LIMIT_S = 30.0  # the bound for closing the slow connections
TARGET_STATUS_P95_MS = 100.0
Slow = tuple[asyncio.StreamReader, asyncio.StreamWriter, float]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1100, help="slow connections (1100)")
    parser.add_argument("--sources", type=int, default=50,
                        help="loopback source addresses they come from (50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 6000 or not 1 <= args.sources <= 250:
        parser.error("--clients is 1-6000 and --sources 1-250")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.clients + 256:
        parser.error(f"this shell's hard descriptor limit {hard} is below --clients + 256")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.clients + 512)), hard))
    return run(lambda: _main(args))


async def _slow(port: int, source: str, complete: bool) -> Slow:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    head = (b"POST /api/v1/wake HTTP/1.1\r\nHost: pi\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n")
    writer.write(head + b'\r\n{"source"' if complete else head + b"X-Slow: 1")
    await writer.drain()
    return reader, writer, time.monotonic()


async def _closed(reader: asyncio.StreamReader, opened: float) -> tuple[float | None, bool]:
    """(seconds until closed or None, whether the server said 503 first)."""
    data = b""
    try:
        async with asyncio.timeout(max(0.0, opened + CLOSE_LIMIT_S - time.monotonic())):
            while chunk := await reader.read(4096):
                data += chunk
    except TimeoutError:
        return None, False
    except ConnectionError:
        pass
    return time.monotonic() - opened, data.startswith(b"HTTP/1.1 503")


async def _status_ms(api: str, n: int) -> tuple[list[float], int]:
    times, failed = [], 0
    for _ in range(n):
        try:
            async with aiohttp.ClientSession() as session:
                start = time.monotonic()
                async with session.get(api + "/api/v1/status",
                                       timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status != 200:
                        failed += 1
                        continue
                times.append((time.monotonic() - start) * 1000)
        except (aiohttp.ClientError, TimeoutError):
            failed += 1
        await asyncio.sleep(0.025)
    return times, failed


def _fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return -1


async def _main(args: argparse.Namespace) -> int:
    site = BenchSite(interval=0.2, timeout=0.2)
    children = Children()
    try:
        host = children.spawn(site.host_command(), site.root / "host.log")
        env_cmd = ["/bin/sh", "-c", f'ulimit -n {NOFILE} && exec "$0" "$@"', sys.executable,
                   "-m", "handshake", *site.pi_command()]
        with (site.root / "pi.log").open("ab") as out:
            pi = subprocess.Popen(env_cmd, cwd=str(site.root), stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1",
                                       "PYTHONPATH": str(ROOT)})
        children.procs.append(pi)
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/api/v1/health")

        async def online() -> bool:
            return await resolve(site.dns_port) != PI_ADDRESS

        await wait_for("host online", online, procs=(pi, host), log=site.root / "pi.log")
        before_ms, before_failed = await _status_ms(site.api, STATUS_SAMPLES)
        rss_before = memory(pi.pid)

        results = await asyncio.gather(*(
            _slow(site.api_port, f"127.0.1.{i % args.sources + 1}", i % 2 == 0)
            for i in range(args.clients)), return_exceptions=True)
        slow = [r for r in results if isinstance(r, tuple)]
        await asyncio.sleep(1.0)
        fds_loaded = _fds(pi.pid)
        rss_loaded = memory(pi.pid)
        under_ms, under_failed = await _status_ms(site.api, STATUS_SAMPLES)

        children.stop(host)
        start = time.monotonic()

        async def failed_over() -> bool:
            return await resolve(site.dns_port) == PI_ADDRESS

        await wait_for("failover to the Pi", failed_over, timeout=10, procs=(pi,))
        failover_s = time.monotonic() - start
        closed = await asyncio.gather(*(_closed(r, t) for r, _, t in slow))
        for _, writer, _ in slow:
            writer.close()
        refused = [c for c, was_503 in closed if was_503]
        admitted = [c for c, was_503 in closed if not was_503 and c is not None]
        still_open = sum(1 for c, _ in closed if c is None)
        alive = pi.poll() is None
    finally:
        children.stop_all()
    figures: dict[str, Any] = {
        "benchmark": "slow_clients", "machine": machine(), "nofile": NOFILE,
        "clients": args.clients, "sources": args.sources, "connected": len(slow),
        "answered_503": len(refused), "closed_without_503": len(admitted), "still_open_after_30s": still_open,
        "admitted_closed_after_s": summary(admitted) if admitted else None,
        "status_ms_before": summary(before_ms) if before_ms else None,
        "status_failed_before": before_failed,
        "status_ms_under_attack": summary(under_ms) if under_ms else None,
        "status_failed_under_attack": under_failed,
        "failover_s": round(failover_s, 3), "daemon_alive": alive,
        "rss_mb_before": rss_before["rss_mb"], "rss_mb_loaded": rss_loaded["rss_mb"],
        "fds_loaded": fds_loaded,
    }
    p95 = figures["status_ms_under_attack"]["p95"] if under_ms else 1e9
    targets = [
        Target("status p95 under attack", p95, TARGET_STATUS_P95_MS, "ms", strict=True),
        Target("status failures under attack", under_failed, 0, "requests"),
        Target("slow connections open after 30 s", still_open, 0, "connections"),
        Target("failover", round(failover_s, 3), 3 * (0.2 + 0.2) + 1.0, "s"),
        Target("daemon exits", 0 if alive else 1, 0, "exits"),
    ]
    if args.json:
        emit_json(figures, targets)
    else:
        print(machine_line(figures["machine"]))
        print(f"api daemon under ulimit -n {NOFILE}; {args.clients} slow clients from "
              f"{args.sources} addresses: {len(slow)} connected; {len(refused)} answered 503 at "
              f"once, {len(admitted)} closed without one (a deadline, or a refusal reset)")
        if admitted:
            s = figures["admitted_closed_after_s"]
            print(f"those closed after {s['min']}-{s['max']} s (median {s['median']} s, "
                  f"counted from the client's connect)")
        for label, key in (("before", "status_ms_before"), ("under attack",
                                                             "status_ms_under_attack")):
            s = figures[key]
            if s:
                print(f"/api/v1/status {label}: median {s['median']} ms, p95 {s['p95']} ms, "
                      f"max {s['max']} ms")
        print(f"status failures under attack: {under_failed}; daemon descriptors loaded: "
              f"{fds_loaded}; RSS {rss_before['rss_mb']} → {rss_loaded['rss_mb']} MB")
        print(f"failover after the host stopped: {failover_s:.3f} s; daemon alive: {alive}")
        for t in targets:
            print(t.line())
    return 0 if all(t.passed for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
