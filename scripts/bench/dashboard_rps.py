#!/usr/bin/env python3
"""Benchmark how many ``/data/*.json`` requests per second the api daemon serves on one core.

The real Pi api daemon (``edgepair pi run api``, the embedded default without nginx) serves
the dashboard's public files: host.json and pi.json it writes itself, the others are
demo-like fixtures (power.json with three plugs' 24 h series is ~50 kB). The daemon is
pinned to one CPU and this client (aiohttp, keep-alive, a bounded number of requests in
flight) to another. Two phases: host.json alone (what a waiting dashboard polls most), then
the dashboard's whole set round-robin. The daemon's CPU time comes from /proc/PID/stat:
below 100 % the client or other processes on that core were the limit; requests per
CPU-second of the daemon is what a core of its own would serve.

    .venv/bin/python scripts/bench/dashboard_rps.py [--seconds 10] [--concurrency 16]
                                                    [--quick] [--json]

Everything runs on 127.0.0.1; the daemon is stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _common import Children, emit_json, machine, machine_line, run, summary, wait_http
from dashboard_site import DashboardSite

TARGET_RPS = 1000.0
FILES = ("host", "pi", "power", "inbox", "control", "pihole", "snapshot")
QUICK_SECONDS = 2.0
# Each request gets this long; on loopback a slow answer means an overloaded daemon.
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class AtLeast:
    """One figure against its floor: ``value ≥ limit``."""

    name: str
    value: float
    limit: float
    unit: str

    @property
    def passed(self) -> bool:
        return self.value >= self.limit

    def line(self) -> str:
        return (f"{self.name} {self.value:g} {self.unit} (target ≥ {self.limit:g} {self.unit}): "
                f"{'PASS' if self.passed else 'FAIL'}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at_least": True, "pass": self.passed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests in flight (default 16)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s per phase")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    seconds = QUICK_SECONDS if args.quick else args.seconds
    return run(lambda: bench(seconds, max(1, args.concurrency), args.json))


async def bench(seconds: float, concurrency: int, as_json: bool) -> int:
    children = Children()
    site = DashboardSite()
    start_load = machine()
    server_cpu, client_cpu = _pick_cpus()
    try:
        proc = site.start(children)
        if server_cpu is not None:
            os.sched_setaffinity(proc.pid, {server_cpu})
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_http(session, site.api + "/data/pi.json", procs=(proc,), log=site.log)
            await _phase(session, site.api, ("host",), 0.5, concurrency, proc.pid)  # warm-up
            small = await _phase(session, site.api, ("host",), seconds, concurrency, proc.pid)
            mix = await _phase(session, site.api, FILES, seconds, concurrency, proc.pid)
    finally:
        children.stop_all()
        site.remove()
    figures = {"seconds": seconds, "concurrency": concurrency, "server_cpu": server_cpu,
               "client_cpu": client_cpu, "machine": start_load, "host_json": small,
               "dashboard_mix": mix}
    targets = [AtLeast("requests/s, dashboard files round-robin", mix["rps"], TARGET_RPS, "req/s"),
               AtLeast("requests/s, host.json", small["rps"], TARGET_RPS, "req/s")]
    if as_json:
        emit_json(figures, targets)  # AtLeast has what emit_json reads of a Target
    else:
        _print(figures, targets)
    return 0 if all(t.passed for t in targets) else 1


async def _phase(session: aiohttp.ClientSession, api: str, names: tuple[str, ...],
                 seconds: float, concurrency: int, pid: int) -> dict[str, Any]:
    urls = itertools.cycle([f"{api}/data/{name}.json" for name in names])
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0, "bytes": 0}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    cpu_before = _cpu_seconds(pid)
    start = time.monotonic()
    end = start + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            sent = time.monotonic()
            try:
                async with session.get(next(urls), timeout=timeout) as response:
                    body = await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok, body = False, b""
            latencies.append(time.monotonic() - sent)
            counts["ok" if ok else "failed"] += 1
            counts["bytes"] += len(body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    cpu = _cpu_seconds(pid) - cpu_before
    return {"files": list(names), "requests": counts["ok"], "failed": counts["failed"],
            "rps": round(counts["ok"] / elapsed, 1),
            "mb_per_s": round(counts["bytes"] / elapsed / 1e6, 2),
            "daemon_cpu_percent": round(100 * cpu / elapsed, 1),
            # what one core would serve if the daemon had it to itself (a shared core's share)
            "per_daemon_cpu_s": round(counts["ok"] / cpu, 1) if cpu > 0 else None,
            "latency_ms": summary(latencies, scale=1000, digits=2)}


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pick_cpus() -> tuple[int | None, int | None]:
    """The daemon gets a core of its own; the client another one when there is one."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1], (cpus[0] if len(cpus) > 1 else None)


def _print(f: dict[str, Any], targets: list[AtLeast]) -> None:
    print(f"api daemon serving /data/*.json on loopback: {f['concurrency']} in flight, "
          f"{f['seconds']:g} s per phase, daemon on CPU {f['server_cpu']}, "
          f"client on CPU {f['client_cpu']}")
    print(machine_line(f["machine"]))
    for key, title in (("host_json", "host.json"), ("dashboard_mix", "dashboard set")):
        p = f[key]
        lat = p["latency_ms"]
        failed = f"  ({p['failed']} failed)" if p["failed"] else ""
        print(f"  {title:<14}{p['rps']:>8,.0f} req/s  {p['mb_per_s']:>6} MB/s  daemon CPU "
              f"{p['daemon_cpu_percent']:>5} % ({p['per_daemon_cpu_s']:,.0f} req per CPU-second)  "
              f"latency p50 {lat['median']} ms, p99 {lat['p99']} ms{failed}")
    for target in targets:
        print(f"  target        {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
