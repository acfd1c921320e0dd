#!/usr/bin/env python3
"""Benchmark the power history at one year: database size per plug-year, and the time to
build power.json with that year on disk.

A year of synthetic readings per plug, at the real sampling rate (every 5 s), goes through
the daemon's own code paths (``Pending.add`` for each sample's duration, ``History.commit``
for the raw rows, minute and daily aggregates and retention) with an injected clock, one
hour per batch to be fast (the daemon commits once a minute; the rows written are the same).
Then the daemon's ``PowerService`` builds and writes power.json from that database.

    .venv/bin/python scripts/bench/power_year.py [--plugs 3] [--days 365] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Target, emit_json, fs_type, machine, machine_line, run, summary
from power_common import PowerSite

from pi import config as pi_config
from pi.power.config import PowerConfig
from pi.power.health import Reading
from pi.power.history import History, Pending
from pi.power.service import PowerService

TARGET_MB_PER_PLUG_YEAR = 50.0
TARGET_BUILD_MS = 50.0
INTERVAL_S = 5.0
BATCH_S = 3600.0
BUILDS = 50
QUICK = {"plugs": 1, "days": 30}
START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugs", type=int, default=3, help="plugs with a year each (default 3)")
    parser.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['plugs']} plug, {QUICK['days']} days (sizes extrapolated)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.plugs, args.days = QUICK["plugs"], QUICK["days"]
    if not (1 <= args.plugs <= 10 and 1 <= args.days <= 800):
        parser.error("--plugs must be in [1, 10], --days in [1, 800]")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    targets = [Target("database size per plug-year", result["size"]["mb_per_plug_year"],
                      TARGET_MB_PER_PLUG_YEAR, "MB"),
               Target("power.json build + write, median", result["publish_ms"]["median"],
                      TARGET_BUILD_MS, "ms", strict=True),
               Target("power.json build + write, p95", result["publish_ms"]["p95"],
                      TARGET_BUILD_MS, "ms", strict=True)]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


def day_profile(plug: int) -> list[float]:
    """Watts for each 5-s slot of a day: a base and a daytime swell (a P110 reads to the mW)."""
    slots = int(86400 // INTERVAL_S)
    return [round(10 + 12 * plug + 40 * max(0.0, math.sin((k * INTERVAL_S / 3600 - 6) / 16 * math.pi)),
                  3) for k in range(slots)]


def generate(path: Path, plugs: int, days: int, say: Any) -> dict[str, Any]:
    """``days`` of samples for ``plugs`` plugs through Pending and History.commit."""
    rng = random.Random(7)
    noise = [round(rng.uniform(0, 5), 3) for _ in range(7919)]  # a prime: no daily pattern
    profiles = [day_profile(i) for i in range(plugs)]
    history = History(path, tz=UTC)
    history.open()
    pending = Pending(history.last_ts)
    names = [f"plug{i}" for i in range(plugs)]
    per_day = len(profiles[0])
    started = time.perf_counter()
    samples = 0
    t = START
    month = [0.0] * plugs
    last_month = -1
    for day in range(days):
        stamp = datetime.fromtimestamp(START + day * 86400, UTC)
        if stamp.month != last_month:
            month, last_month = [0.0] * plugs, stamp.month
        if day % 30 == 0:
            say(f"    day {day} of {days} …")
        today = [0.0] * plugs
        for slot in range(per_day):
            t = START + day * 86400 + slot * INTERVAL_S
            for i, name in enumerate(names):
                w = profiles[i][slot] + noise[(samples + i) % 7919]
                wh = w * INTERVAL_S / 3600
                today[i] += wh
                month[i] += wh
                pending.add(name, t + i * 0.7, w, int(today[i]), int(month[i]),
                            interval_s=INTERVAL_S, max_gap_s=2.5 * INTERVAL_S)
                samples += 1
            if (slot + 1) * INTERVAL_S % BATCH_S == 0:
                history.commit(pending.take(), t + INTERVAL_S)
    t += INTERVAL_S
    history.commit(pending.take(), t)
    took = time.perf_counter() - started
    history.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    history.close()
    return {"samples": samples, "seconds": round(took, 1),
            "samples_per_s": round(samples / took), "end": t}


def sizes(path: Path, plugs: int, days: int) -> dict[str, Any]:
    total = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
                if Path(f"{path}{s}").exists())
    tables: dict[str, float] = {}
    with sqlite3.connect(path) as db:
        try:
            for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                tables[name] = round(size / 1e6, 2)
        except sqlite3.OperationalError:
            pass  # sqlite built without dbstat
        rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("raw", "minute", "daily")}
        free = db.execute("PRAGMA freelist_count").fetchone()[0] * db.execute(
            "PRAGMA page_size").fetchone()[0]
    mb = total / 1e6
    per_plug = mb / plugs
    # the size grows with minute rows until minute_retention_days (400); raw stays 14 days
    minute_mb = tables.get("minute", 0.0) / plugs
    per_plug_year = per_plug + (minute_mb * (365 - days) / days if days < 365 else 0.0)
    steady = per_plug_year + minute_mb * (400 - 365) / min(days, 365) if days else 0.0
    return {"file_mb": round(mb, 2), "tables_mb": tables, "rows": rows,
            "free_mb": round(free / 1e6, 2), "mb_per_plug": round(per_plug, 2),
            "mb_per_plug_year": round(per_plug_year, 2),
            "mb_per_plug_steady_state": round(steady, 2), "extrapolated": days < 365}


async def build_times(site: PowerSite, now: float) -> dict[str, Any]:
    config = pi_config.load(site.config)
    power = config.power
    assert isinstance(power, PowerConfig)
    service = PowerService(config, power, {}, clock=lambda: now)
    await service.open()
    for i, status in enumerate(service.statuses.values()):
        status.succeeded(Reading(at=now - 2, w=30.0 + i, today_wh=500, month_wh=9000))
    timings: list[float] = []
    builds: list[float] = []
    try:
        statuses = list(service.statuses.values())
        for _ in range(BUILDS):
            begin = time.perf_counter()
            await service.publish()  # queries, document, JSON, atomic write with fsync
            timings.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            await service._db(service.document, now, statuses, [])  # queries and document only
            builds.append(time.perf_counter() - begin)
        size = (config.public_dir / "power.json").stat().st_size
    finally:
        await service.close()
    return {"publish": summary(timings, 1000, 2), "build": summary(builds, 1000, 2),
            "first_ms": round(timings[0] * 1000, 2), "power_json_bytes": size}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    host = machine()
    site = PowerSite(args.plugs, timezone="UTC")
    try:
        await site.start()
        site.database.parent.mkdir(parents=True, exist_ok=True)
        say(f"  generating {args.days} days × {args.plugs} plugs at {INTERVAL_S:g} s …")
        made = await asyncio.to_thread(generate, site.database, args.plugs, args.days, say)
        size = sizes(site.database, args.plugs, args.days)
        say(f"  building power.json {BUILDS} times …")
        times = await build_times(site, made["end"])
        fs = fs_type(site.root)
    finally:
        await site.stop()
        site.remove()
    return {"bench": "power_year",
            "config": {"plugs": args.plugs, "days": args.days, "interval_s": INTERVAL_S,
                       "batch_s": BATCH_S, "state_fs": fs},
            "generate": {k: v for k, v in made.items() if k != "end"}, "size": size,
            "publish_ms": times["publish"], "build_ms": times["build"],
            "first_publish_ms": times["first_ms"], "power_json_bytes": times["power_json_bytes"],
            "machine": host}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    c, g, s = r["config"], r["generate"], r["size"]
    print(f"power history: {c['days']} days × {c['plugs']} plugs at {c['interval_s']:g} s "
          f"({c['state_fs']})")
    print(f"  generated    {g['samples']:,} samples in {g['seconds']:g} s "
          f"({g['samples_per_s']:,}/s through Pending.add + History.commit, "
          f"{c['batch_s']:g} s per batch)")
    print(f"  database     {s['file_mb']:g} MB: {s['mb_per_plug']:g} MB per plug "
          f"(free pages {s['free_mb']:g} MB); rows {s['rows']}")
    if s["tables_mb"]:
        print("               by table (MB): " + ", ".join(f"{k} {v:g}" for k, v in
                                                       sorted(s["tables_mb"].items())))
    note = " (extrapolated from the minute table)" if s["extrapolated"] else ""
    print(f"  per plug-year {s['mb_per_plug_year']:g} MB{note}; at the 400-day minute retention "
          f"{s['mb_per_plug_steady_state']:g} MB per plug")
    p, b = r["publish_ms"], r["build_ms"]
    print(f"  power.json   {r['power_json_bytes']:,} B; build + write: median {p['median']} ms, "
          f"p95 {p['p95']} ms, first {r['first_publish_ms']} ms; build alone (queries + "
          f"document): median {b['median']} ms, p95 {b['p95']} ms")
    print(machine_line(r["machine"]))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
