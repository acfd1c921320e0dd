#!/usr/bin/env python3
"""Benchmark how often the power daemon commits to sqlite (SD wear), per minute and per plug.

The real daemon (``pi.power.daemon.run``, in this process so sqlite can be watched) polls
three emulated P110s every 5 s with production defaults (commit_interval_s = 60). Every SQL
statement sqlite runs is seen through ``sqlite3.Connection.set_trace_callback`` on the
daemon's own connection: COMMITs are counted there, and writes outside an explicit
transaction (each one an implicit commit) are counted too. Bytes written to disk come from
/proc/self/io (the emulated plugs write nothing).

    .venv/bin/python scripts/bench/power_commits.py [--minutes 5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import threading
import time
from typing import Any

from _common import Target, emit_json, fs_type, io_counters, machine, machine_line, run, wait_for
from power_common import PowerSite

from pi import config as pi_config
from pi.power import daemon
from pi.power import history as history_module

TARGET_PER_PLUG_PER_MIN = 1.0
QUICK_MINUTES = 1.1
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP")


class Trace:
    """Counts what sqlite executes on the daemon's connections (called from its db thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commits: list[float] = []
        self.implicit: list[tuple[float, str]] = []  # writes outside BEGIN … COMMIT
        self.statements = 0
        self.in_transaction = False
        self.plugs_per_commit: list[set[str]] = []

    def __call__(self, sql: str) -> None:
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        with self.lock:
            self.statements += 1
            if verb == "BEGIN":
                self.in_transaction = True
            elif verb in ("COMMIT", "END"):
                self.in_transaction = False
                self.commits.append(time.monotonic())
            elif verb == "ROLLBACK":
                self.in_transaction = False
            elif not self.in_transaction and (verb in WRITES or "PRAGMA user_version=" in sql):
                self.implicit.append((time.monotonic(), sql.strip()[:60]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long (default 5)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MINUTES:g} minutes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = QUICK_MINUTES
    if not 0 < args.minutes <= 60:
        parser.error("--minutes must be in (0, 60]")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    targets = [Target("sqlite commits per minute touching each plug", result["per_plug_per_min"],
                      TARGET_PER_PLUG_PER_MIN, "/min")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    host = machine()
    trace = Trace()
    real_connect = sqlite3.connect

    def connect(*a: Any, **kw: Any) -> sqlite3.Connection:
        connection = real_connect(*a, **kw)
        connection.set_trace_callback(trace)
        return connection

    real_commit = history_module.History.commit

    def commit(self: history_module.History, samples: Any, now: float) -> int:
        with trace.lock:
            trace.plugs_per_commit.append({s.plug for s in samples})
        return real_commit(self, samples, now)

    site = PowerSite(3)
    sqlite3.connect = connect  # type: ignore[assignment]
    history_module.History.commit = commit  # type: ignore[method-assign]
    try:
        await site.start()
        config = pi_config.load(site.config)
        task = asyncio.create_task(daemon.run(config, ready=lambda: None, kick=lambda n: None))
        try:
            async def ready() -> bool:
                if task.done():
                    task.result()
                return site.all_ok()

            await wait_for("every plug answering", ready)
            opened = len(trace.implicit)
            io_start = io_counters(os.getpid())
            commits_start = len(trace.commits)
            batches_start = len(trace.plugs_per_commit)
            started = time.monotonic()
            say(f"  watching the daemon for {args.minutes:g} minutes …")
            while time.monotonic() - started < args.minutes * 60:
                if task.done():
                    task.result()
                await asyncio.sleep(1)
            took = time.monotonic() - started
            io_end = io_counters(os.getpid())
            commits = trace.commits[commits_start:]
            batches = trace.plugs_per_commit[batches_start:]
            implicit = trace.implicit[opened:]
            readings = sum(p.readings for p in site.plugs)
            healthy = site.all_ok()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with sqlite3.connect(site.database) as db:
            stored = db.execute("SELECT count(*) FROM raw").fetchone()[0]
    finally:
        sqlite3.connect = real_connect  # type: ignore[assignment]
        history_module.History.commit = real_commit  # type: ignore[method-assign]
        await site.stop()
        fs = fs_type(site.root)
        site.remove()
    minutes = took / 60
    writes = len(commits) + len(implicit)
    per_plug = {f"plug{i}": sum(1 for plugs in batches if f"plug{i}" in plugs) / minutes
                for i in range(site.count)}
    return {
        "bench": "power_commits",
        "config": {"plugs": site.count, "interval_s": site.interval_s, "commit_interval_s": 60,
                   "minutes": round(minutes, 2), "state_fs": fs},
        "commits": len(commits), "implicit_writes": len(implicit),
        "startup_writes": opened, "commits_per_min": round(writes / minutes, 3),
        "per_plug_per_min": round(max(per_plug.values()), 3),
        "by_plug_per_min": {k: round(v, 3) for k, v in per_plug.items()},
        "readings": readings, "rows_stored_at_stop": stored, "all_plugs_ok": healthy,
        "disk_write_bytes": io_end["write_bytes"] - io_start["write_bytes"],
        "disk_write_bytes_per_hour": round((io_end["write_bytes"] - io_start["write_bytes"])
                                           / took * 3600),
        "statements": trace.statements, "machine": host,
    }


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    c = r["config"]
    print(f"power daemon sqlite commits: {c['plugs']} emulated plugs every {c['interval_s']:g} s, "
          f"commit_interval_s {c['commit_interval_s']}, watched {c['minutes']:g} min ({c['state_fs']})")
    print(f"  commits      {r['commits']} explicit + {r['implicit_writes']} implicit writes = "
          f"{r['commits_per_min']:g} per minute for all plugs together "
          f"(one transaction carries every plug's batch); {r['startup_writes']} schema writes at start")
    print("  per plug     " + ", ".join(f"{k} {v:g}/min" for k, v in r["by_plug_per_min"].items()))
    print(f"  readings     {r['readings']} answered by the plugs, {r['rows_stored_at_stop']} rows "
          f"stored after the clean stop; all plugs ok: {r['all_plugs_ok']}")
    print(f"  disk writes  {r['disk_write_bytes'] / 1e3:.0f} kB in the window, "
          f"{r['disk_write_bytes_per_hour'] / 1e6:.2f} MB per hour (sqlite WAL + checkpoints + "
          f"power.json every 10 s; /proc/self/io write_bytes)")
    print(machine_line(r["machine"]))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
