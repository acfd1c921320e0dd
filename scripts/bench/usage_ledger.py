#!/usr/bin/env python3
"""Benchmark the usage ledger: sqlite commits and bytes written per simulated day, build time
of usage.json over 30 days (with a host plug's power history), RSS added.

The real ``Ledger`` and ``UsageService`` run in this process on a temporary state directory
with an injected clock: a day is simulated as the api daemon sees it (a check every 5 s,
a wake every ~40 min with its state changes, demand clients among them). COMMITs are
counted through ``sqlite3.Connection.set_trace_callback``; bytes from /proc/self/io.

    .venv/bin/python scripts/bench/usage_ledger.py [--days 30] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Target, emit_json, fs_type, io_counters, machine, machine_line, memory

from pi import state as sm
from pi.config import load
from pi.power.history import History, Sample

TARGET_COMMITS_PER_DAY = 1440.0 + 1  # at most one a minute (plus the clean stop)
TARGET_BUILD_MS = 500.0
STEP_S = 5.0
DAY = 86400.0
START = 1_780_012_800.0  # a UTC midnight


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= 400:
        parser.error("--days must be in [1, 400]")
    result = bench(args.days)
    targets = [Target("sqlite commits per simulated day", result["commits_per_day"],
                      TARGET_COMMITS_PER_DAY, "/day"),
               Target("usage.json build over 30 days (median)", result["build_ms_median"],
                      TARGET_BUILD_MS, "ms")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


def bench(days: int) -> dict[str, Any]:
    from pi.usage.service import UsageService  # noqa: PLC0415 - RSS before it is counted

    rss_before = memory(os.getpid())["rss_mb"]
    root = Path(tempfile.mkdtemp(prefix="edgepair-bench-usage-"))
    try:
        config_path = root / "pi.toml"
        config_path.write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{root / 'state'}"
secrets_file = "{root / 'secrets.toml'}"
[host]
address = "127.0.0.3"
mac = "02:ED:6E:9A:17:01"
url = "http://127.0.0.3:9"
[schedule]
timezone = "UTC"
[usage]
price_per_kwh = 0.32
[[power.plugs]]
name = "nas"
address = "127.0.0.1"
role = "host"
""")
        config = load(config_path)
        clock = [START]
        service = UsageService(config, clock=lambda: clock[0])
        service.open(sm.HostStatus(state=sm.HostState.OFFLINE, since=START))
        ledger = service.ledger
        commits: list[float] = []
        ledger.db.set_trace_callback(
            lambda sql: commits.append(clock[0]) if sql.strip().upper().startswith("COMMIT") else None)
        _power_history(config.private_dir / "power.sqlite3", days)
        io_start = io_counters(os.getpid())["write_bytes"]
        wakes = 0
        state = "offline"
        clients = [f"192.168.1.{n}" for n in range(50, 60)]
        steps = int(days * DAY / STEP_S)
        for i in range(steps):
            now = START + (i + 1) * STEP_S
            clock[0] = now
            minute = int((now - START) // 60)
            if minute % 40 == 0 and now % 60 < STEP_S and state == "offline":  # a wake
                service.state_changed(_status(state), _status("waking", now), now)
                service.woken("demand:dns" if wakes % 2 else "schedule",
                              clients[wakes % len(clients)] if wakes % 2 else None, now)
                wakes += 1
                state = "waking"
            elif state == "waking" and now % 60 >= 50:
                service.state_changed(_status(state), _status("online", now), now)
                state = "online"
            elif state == "online" and minute % 40 == 25:
                service.state_changed(_status(state), _status("offline", now), now)
                state = "offline"
            if ledger.due(now):
                ledger.commit(now)
        ledger.commit(clock[0])  # the clean stop
        io_end = io_counters(os.getpid())["write_bytes"]
        builds = []
        for _ in range(7):
            t0 = time.perf_counter()
            document = service.document(clock[0])
            builds.append((time.perf_counter() - t0) * 1000)
        service.publish(clock[0])
        size = (config.public_dir / "usage.json").stat().st_size
        db_size = sum(p.stat().st_size for p in config.private_dir.glob("usage.sqlite3*"))
        rss_after = memory(os.getpid())["rss_mb"]
        fs = fs_type(root)
        ledger.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    builds.sort()
    return {
        "bench": "usage_ledger",
        "config": {"days": days, "step_s": STEP_S, "commit_interval_s": 60, "state_fs": fs},
        "wakes": wakes, "commits": len(commits),
        "commits_per_day": round(len(commits) / days, 1),
        "disk_write_bytes_per_day": round((io_end - io_start) / days),
        "database_bytes": db_size,
        "build_ms_median": round(builds[len(builds) // 2], 2), "build_ms_max": round(builds[-1], 2),
        "usage_json_bytes": size, "days_in_document": len(document.days),
        "rss_added_mb": round(rss_after - rss_before, 1), "machine": machine(),
    }


def _status(state: str, since: float = START) -> sm.HostStatus:
    return sm.HostStatus(state=sm.HostState(state), since=since)


def _power_history(path: Path, days: int) -> None:
    """A host plug's minute history for the simulated days (the power daemon's file)."""
    history = History(path)
    history.open()
    samples = [Sample("nas", round((START + m * 60 + 30) * 1000), 30_000 if m % 40 < 25 else 2000,
                      60_000) for m in range(days * 1440)]
    for first in range(0, len(samples), 1440):
        batch = samples[first:first + 1440]
        history.commit(batch, batch[-1].ts / 1000)
    history.close()


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    c = r["config"]
    print(f"usage ledger: {c['days']} simulated days, a check every {c['step_s']:g} s, "
          f"commit_interval_s {c['commit_interval_s']} ({c['state_fs']})")
    print(f"  commits      {r['commits']} for {r['wakes']} wakes = {r['commits_per_day']:g} per day")
    print(f"  disk writes  {r['disk_write_bytes_per_day'] / 1e3:.0f} kB per day "
          f"(/proc/self/io write_bytes); database {r['database_bytes'] / 1e3:.0f} kB")
    print(f"  build        usage.json over 30 days: median {r['build_ms_median']:g} ms, "
          f"max {r['build_ms_max']:g} ms; {r['usage_json_bytes'] / 1e3:.1f} kB")
    print(f"  memory       {r['rss_added_mb']:g} MB RSS added (import, ledger, build)")
    print(machine_line(r["machine"]))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
