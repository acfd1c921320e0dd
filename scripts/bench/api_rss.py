#!/usr/bin/env python3
"""Benchmark the api daemon's memory (RSS) and its disk writes under heartbeats and requests.

The real Pi api daemon (``edgepair pi run api``) heartbeats a real host agent every 0.05 s
(100× the default rate). The benchmark reads ``/proc/PID/status`` (VmRSS, VmHWM) and
``/proc/PID/io`` of the daemon: first over a quiet window (heartbeats only: the writes an
SD card sees while nothing happens), then over a soak where it also sends a paced mix of
requests — status, public files, signed going-offline/coming-online with a small snapshot,
anonymous wakes (mostly 429), 404s — and DNS queries.

    .venv/bin/python scripts/bench/api_rss.py [--quiet-seconds 60] [--seconds 60] [--rate 60]
                                              [--dns-rate 50] [--quick] [--json]

Every packet goes to 127.0.0.0/8; all daemons are stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
from _common import (
    HOST_ADDRESS,
    BenchSite,
    Children,
    Target,
    emit_json,
    fs_type,
    io_counters,
    machine,
    machine_line,
    memory,
    resolve,
    run,
    summary,
    wait_for,
    wait_http,
)

from handshake.client import HandshakeClient
from handshake.errors import PeerUnavailable, RequestError

INTERVAL_S = 0.05  # heartbeat interval and timeout during the whole run
# Was 45 MB for heartbeat, DNS and wake; the daemon now also carries the sleep proxy, the
# usage ledger, the backup and /metrics + notify. Of ~48 MB: Python 10.6, asyncio + ssl
# 9.4, aiohttp 12.4, dnspython 2.7, edgepair's own modules ~8, buffers and caches ~5. The
# bound holds what it must: no growth under load (start → end within 1 MB).
TARGET_RSS_MB = 50.0
WORKERS = 4  # requests in flight at most: a dashboard, a CLI, a host and a script at once
SAMPLE_S = 0.5  # RSS sampling period
# The slowest periodic write: pi.json (PI_STATS_INTERVAL_S); host.json is every 30 s.
PUBLISH_PERIOD_S = 60.0
QUICK = {"quiet_seconds": 5.0, "seconds": 10.0}
# One request in ten is a state change: going-offline and coming-online alternate.
MIX = ("status", "host_json", "status", "host_json", "transition",
       "wake", "not_found", "status", "host_json", "transition")
SMALL_SNAPSHOT: dict[str, Any] = {
    "hostname": "nas", "uptime_s": 86400.0, "boot_id": "0" * 32, "health": "ok",
    "volumes": [{"path": "/srv", "total_bytes": 4_000_000_000_000,
                 "used_bytes": 1_200_000_000_000, "used_percent": 30.0}],
    "units": [{"name": "smbd.service", "load_state": "loaded", "active_state": "active",
               "sub_state": "running"}],
    "backup": None,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet-seconds", type=float, default=60.0,
                        help="heartbeats only, for the disk writes (default 60: two host.json "
                             "publishes and one pi.json)")
    parser.add_argument("--seconds", type=float, default=60.0, help="the soak (default 60)")
    parser.add_argument("--rate", type=float, default=60.0,
                        help="HTTP requests per second during the soak (default 60)")
    parser.add_argument("--dns-rate", type=float, default=50.0,
                        help="DNS queries per second during the soak (default 50)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['quiet_seconds']:g} s quiet, {QUICK['seconds']:g} s soak")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.quiet_seconds, args.seconds = QUICK["quiet_seconds"], QUICK["seconds"]
    if not (0 < args.quiet_seconds <= 600 and 0 < args.seconds <= 600
            and 0 < args.rate <= 2000 and 0 <= args.dns_rate <= 2000):
        parser.error("seconds must be in (0, 600], --rate in (0, 2000], --dns-rate in [0, 2000]")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    api = result["api"]
    targets = [Target("api RSS peak (VmHWM)", api["peak_mb"], TARGET_RSS_MB, "MB"),
               Target("api RSS at the end", api["end_mb"], TARGET_RSS_MB, "MB")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    # WARNING: the daemon's own log file would otherwise count as state writes; in
    # production the log goes to journald, another process.
    host_machine = machine()
    site = BenchSite(interval=INTERVAL_S, timeout=INTERVAL_S, pi_log_level="WARNING")
    children = Children()
    pi_log, host_log = site.root / "pi.log", site.root / "host.log"
    say: Callable[[str], None] = (lambda text: None) if args.json else \
        (lambda text: print(text, file=sys.stderr))
    try:
        pi = children.spawn(site.pi_command(), pi_log)
        host = children.spawn(site.host_command(), host_log)
        async with aiohttp.ClientSession() as session:
            for url in (site.api, site.host_url):
                await wait_http(session, url + "/api/v1/health", (pi, host), pi_log)

            async def online() -> bool:
                return await resolve(site.dns_port) == HOST_ADDRESS

            await wait_for("the host online (DNS → host)", online, procs=(pi, host), log=pi_log)
            start_mem = memory(pi.pid)
            io_start = io_counters(pi.pid)
            say(f"  quiet window: heartbeats only for {args.quiet_seconds:g} s …")
            await _watch(pi, host, args.quiet_seconds)
            io_quiet = io_counters(pi.pid)
            quiet_mem = memory(pi.pid)
            say(f"  soak: {args.rate:g} requests/s and {args.dns_rate:g} DNS queries/s "
                f"for {args.seconds:g} s …")
            sampled: list[float] = []
            load = await _soak(site, session, args, pi, host, sampled)
            io_end = io_counters(pi.pid)
            end_mem = memory(pi.pid)
            host_mem = memory(host.pid)
            final = await _status(session, site.api)
        children.stop(host)
        code = children.stop(pi)
        log_text = pi_log.read_text(errors="replace")
        if code != 0 or "Traceback" in log_text:
            raise SystemExit(f"the Pi api daemon failed (exit {code}):\n{log_text[-3000:]}")
    finally:
        children.stop_all()
        site.remove()
    quiet = _delta(io_start, io_quiet)
    soak = _delta(io_quiet, io_end)
    per_hour = 3600 / args.quiet_seconds
    return {
        "bench": "api_rss",
        "config": {"heartbeat_interval_s": INTERVAL_S, "heartbeat_timeout_s": INTERVAL_S,
                   "quiet_s": args.quiet_seconds, "soak_s": args.seconds, "rate": args.rate,
                   "dns_rate": args.dns_rate, "workers": WORKERS,
                   "state_fs": fs_type(site.root.parent)},
        "api": {"start_mb": start_mem["rss_mb"], "after_quiet_mb": quiet_mem["rss_mb"],
                "end_mb": end_mem["rss_mb"], "peak_mb": end_mem["hwm_mb"],
                "max_sampled_mb": max(sampled, default=end_mem["rss_mb"])},
        "host_agent": {"end_mb": host_mem["rss_mb"], "peak_mb": host_mem["hwm_mb"]},
        "load": load,
        "final_state": final,
        "machine": host_machine,
        "writes": {
            "quiet": quiet,
            "quiet_per_hour": {k: round(v * per_hour) for k, v in quiet.items()},
            "soak": soak,
            "soak_per_transition_bytes": round(soak["write_bytes"] / load["transitions"])
            if load["transitions"] else None,
        },
    }


async def _watch(pi: Any, host: Any, seconds: float) -> None:
    """Sleep ``seconds``, failing early if a daemon dies."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for proc in (pi, host):
            if proc.poll() is not None:
                raise SystemExit(f"a daemon exited with {proc.returncode} during the run")
        await asyncio.sleep(min(left, SAMPLE_S))


async def _soak(site: BenchSite, session: aiohttp.ClientSession, args: argparse.Namespace,
                pi: Any, host: Any, sampled: list[float]) -> dict[str, Any]:
    """The paced request mix, the DNS queries and the RSS sampler, all for ``args.seconds``."""
    signed = HandshakeClient(site.api, site.key, session=session)
    anonymous = HandshakeClient(site.api, None, session=session)
    kinds = itertools.cycle(MIX)
    numbers = itertools.count()
    going_offline = itertools.cycle((True, False))
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    dns_answers: Counter[str] = Counter()
    started = time.monotonic()
    end = started + args.seconds

    async def one(kind: str) -> None:
        if kind == "transition":
            kind = "going-offline" if next(going_offline) else "coming-online"
        begin = time.perf_counter()
        try:
            match kind:
                case "status":
                    await anonymous.request("GET", "/api/v1/status", signed=False)
                case "host_json":
                    await anonymous.request("GET", "/data/host.json", signed=False)
                case "going-offline":
                    await signed.request("POST", "/api/v1/host/going-offline", {
                        "reason": "suspend", "wake_at": None, "snapshot": SMALL_SNAPSHOT})
                case "coming-online":
                    await signed.request("POST", "/api/v1/host/coming-online",
                                         {"boot_id": "0" * 32})
                case "wake":
                    await anonymous.request("POST", "/api/v1/wake", {"source": "dashboard"},
                                            signed=False)
                case _:
                    await anonymous.request("GET", "/api/v1/no-such-thing", signed=False)
            codes[f"{kind} 2xx"] += 1
        except RequestError as exc:
            codes[f"{kind} {exc.status}"] += 1
        except PeerUnavailable as exc:
            errors[f"{kind}: {exc}"[:200]] += 1
            return
        latencies.append(time.perf_counter() - begin)

    async def worker() -> None:
        while True:
            due = started + next(numbers) / args.rate
            if due >= end:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await one(next(kinds))

    async def dns_queries() -> None:
        for n in itertools.count():
            due = started + n / args.dns_rate
            if due >= end:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            dns_answers[await resolve(site.dns_port) or "no answer"] += 1

    async def sampler() -> None:
        while time.monotonic() < end:
            sampled.append(memory(pi.pid)["rss_mb"])
            await _watch(pi, host, SAMPLE_S)

    tasks = [*(worker() for _ in range(WORKERS)), sampler()]
    if args.dns_rate:
        tasks.append(dns_queries())
    await asyncio.gather(*tasks)
    took = time.monotonic() - started
    served = sum(codes.values())
    return {"requests": served, "requests_per_s": round(served / took, 1),
            "transitions": codes["going-offline 2xx"] + codes["coming-online 2xx"],
            "by_kind": dict(sorted(codes.items())), "failed": dict(errors),
            "latency_ms": summary(latencies, scale=1000, digits=2) if latencies else None,
            "dns_queries": sum(dns_answers.values()), "dns_answers": dict(dns_answers)}


async def _status(session: aiohttp.ClientSession, api: str) -> dict[str, Any]:
    async with session.get(api + "/api/v1/status") as resp:
        doc = await resp.json()
    return {"state": doc["state"], "alarm": doc["alarm"]}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = ("wchar", "syscw", "write_bytes", "cancelled_write_bytes")
    return {k: after[k] - before[k] for k in keys}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    c, a, h, load, w = r["config"], r["api"], r["host_agent"], r["load"], r["writes"]
    print(f"api daemon RSS: heartbeats every {c['heartbeat_interval_s']:g} s to a real host "
          f"agent; {c['quiet_s']:g} s quiet, then a {c['soak_s']:g} s soak")
    print(f"  api RSS      start {a['start_mb']:.1f} MB   after quiet {a['after_quiet_mb']:.1f} MB"
          f"   end {a['end_mb']:.1f} MB   peak (VmHWM) {a['peak_mb']:.1f} MB")
    print(f"  host agent   RSS {h['end_mb']:.1f} MB   peak {h['peak_mb']:.1f} MB")
    lat = load["latency_ms"] or {}
    print(f"  served       {load['requests']} requests ({load['requests_per_s']:g}/s, "
          f"{c['workers']} in flight at most; latency p50 {lat.get('median')} ms, "
          f"p99 {lat.get('p99')} ms), {load['transitions']} state changes, "
          f"{load['dns_queries']} DNS queries")
    print("               " + ", ".join(f"{k}: {v}" for k, v in load["by_kind"].items()))
    print("               DNS answers: " + ", ".join(f"{k}: {v}" for k, v in
                                                     load["dns_answers"].items()))
    if load["failed"]:
        print(f"  FAILED       {load['failed']}")
    q, qh, s = w["quiet"], w["quiet_per_hour"], w["soak"]
    print(f"  disk writes  ({c['state_fs']}, from /proc/PID/io; data pages only, the journal "
          "and metadata come on top; the daemon logs at WARNING, so its log is not counted)")
    print(f"    quiet {c['quiet_s']:g} s: {q['write_bytes']} B to disk, {q['syscw']} write "
          f"calls, {q['wchar']} B written")
    if c["quiet_s"] < PUBLISH_PERIOD_S:
        print(f"    (the quiet window is shorter than pi.json's {PUBLISH_PERIOD_S:g} s period: "
              "the figure per hour below is not representative)")
    print(f"    → per hour of heartbeats with nothing happening: "
          f"{qh['write_bytes'] / 1e6:.2f} MB to disk, {qh['syscw']} write calls, "
          f"{qh['wchar'] / 1e6:.2f} MB written (independent of the heartbeat rate)")
    print(f"    soak {c['soak_s']:g} s: {s['write_bytes']} B to disk, {s['syscw']} write calls; "
          f"{w['soak_per_transition_bytes']} B per state change")
    print(f"  final state  {r['final_state']['state']}, alarm {r['final_state']['alarm']}")
    print(machine_line(r["machine"]))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
