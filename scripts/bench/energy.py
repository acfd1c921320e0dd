#!/usr/bin/env python3
"""Benchmark the energy history at one year: its size on disk, and the time to build
energy.json with that year on disk.

A year of control ticks at the real rate (every 5 s: SoC, battery, grid, PV and load W,
mode, writes), with a plan slot in force every quarter hour (prices, forecast, battery
model), goes through ``EnergyHistory.commit`` (raw ticks, minutes, the slot audit, days,
retention) one hour per batch with an injected clock (the daemon commits once a minute; the
rows written are the same). Then ``energy.build`` and the public write run on that database.

    .venv/bin/python scripts/bench/energy.py [--days 365] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Target, emit_json, fs_type, machine, machine_line, summary

from handshake import documents
from handshake.documents import EnergyDocument
from pi.control import energy
from pi.control.audit import SlotPlan
from pi.control.history import SLOT_S, EnergyHistory, PlanInfo, Tick, mode_code

TARGET_MB_PER_YEAR = 30.0
TARGET_BUILD_MS = 50.0
TICK_S = 5.0
BATCH_S = 3600
BUILDS = 50
QUICK_DAYS = 30
START = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DAYS} days (the year's size extrapolated)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.days = QUICK_DAYS
    if not 1 <= args.days <= 800:
        parser.error("--days must be in [1, 800]")
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="edgepair-bench-energy-") as tmp:
        result = bench(Path(tmp), args.days, say)
    targets = [Target("energy history per year", result["size"]["mb_per_year"],
                      TARGET_MB_PER_YEAR, "MB"),
               Target("energy.json build from a year, median", result["build_ms"]["median"],
                      TARGET_BUILD_MS, "ms", strict=True),
               Target("energy.json build + write, p95", result["publish_ms"]["p95"],
                      TARGET_BUILD_MS, "ms", strict=True)]
    if args.json:
        emit_json(result, targets)
    else:
        print(machine_line(result["machine"]))
        print(f"generated {result['generate']['ticks']} ticks in {result['generate']['seconds']} s; "
              f"file {result['size']['file_mb']} MB, rows {result['size']['rows']}, "
              f"tables {result['size']['tables_mb']}")
        print(f"energy.json {result['energy_json_bytes']} bytes; build {result['build_ms']}; "
              f"build + write {result['publish_ms']}")
        for target in targets:
            print(target.line())
    return 0 if all(t.passed for t in targets) else 1


def household(t: float) -> tuple[float, float]:
    """(PV W, load W) at Unix time t: a sunny day's bell and a morning/evening load."""
    hour = (t % 86400) / 3600
    pv = 4000 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 < hour < 20 else 0.0
    load = 350 + 900 * math.exp(-((hour - 7.5) ** 2) / 2) + 1400 * math.exp(-((hour - 19) ** 2) / 4)
    return pv, load


def slot_plan(start: int, plan_id: str) -> SlotPlan:
    hour = (start % 86400) / 3600
    price = 0.22 + 0.14 * math.exp(-((hour - 19) ** 2) / 4)
    pv, load = household(start + SLOT_S / 2)
    return SlotPlan(start, plan_id, "normal", None, None, price, 0.08, round(pv), round(load),
                    round(pv - load), 0.0, 50.0, 10_000.0, 0.9, 0.2, 10.0, 95.0, 5000.0, 5000.0)


def generate(path: Path, days: int, say: Any) -> dict[str, Any]:
    history = EnergyHistory(path, tz=UTC)
    history.open()
    started = time.perf_counter()
    soc, ticks, slots, plans = 50.0, [], [], []
    count = 0
    end = START + days * 86400
    t = START
    while t < end:
        t += TICK_S
        if int(t) % SLOT_S == TICK_S:  # a new slot: its plan (a new plan each day)
            plan_id = f"plan-{int(t) // 86400}"
            if int(t) % 86400 == TICK_S:
                plans.append(PlanInfo(plan_id, int(t) // 86400, int(t - TICK_S),
                                      int(t - TICK_S) + 86400, 1.0))
            slots.append(slot_plan(int(t - TICK_S), plan_id))
        pv, load = household(t)
        battery = max(min(pv - load, 5000.0), -5000.0)
        if (battery > 0 and soc >= 95) or (battery < 0 and soc <= 10):
            battery = 0.0
        soc += battery * TICK_S / 3600 / 10_000 * 100
        grid = load - pv + battery
        ticks.append(Tick(int(t * 1000), int(TICK_S * 1000), round(soc * 10), round(battery),
                          round(grid), round(pv), round(load), mode_code("normal"),
                          1 if int(t) % 86400 == 7200 else 0))
        count += 1
        if int(t) % BATCH_S == 0:
            history.commit(ticks, slots, plans, t)
            ticks, slots, plans = [], [], []
            if int(t) % (30 * 86400) == 0:
                say(f"    day {(int(t) - START) // 86400} of {days} …")
    history.commit(ticks, slots, plans, t)
    took = time.perf_counter() - started
    history.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    history.close()
    return {"ticks": count, "seconds": round(took, 1), "ticks_per_s": round(count / took),
            "end": t}


def sizes(path: Path, days: int) -> dict[str, Any]:
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
                for t in ("raw", "minute", "slot", "daily")}
    mb = total / 1e6
    # Raw ticks stay 14 days; minutes and slots grow until their ~400 days; days forever.
    growing = tables.get("minute", 0.0) + tables.get("slot", 0.0) + tables.get("daily", 0.0)
    per_year = mb + (growing * (365 - days) / days if days < 365 else 0.0)
    return {"file_mb": round(mb, 2), "tables_mb": tables, "rows": rows,
            "mb_per_year": round(per_year, 2), "extrapolated": days < 365}


def build_times(path: Path, public: Path, now: float) -> dict[str, Any]:
    history = EnergyHistory(path, tz=UTC)
    history.open()
    builds, publishes = [], []
    out = public / "energy.json"
    try:
        for _ in range(BUILDS):
            begin = time.perf_counter()
            doc = energy.build(history, now, 60.0)
            builds.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            doc = energy.build(history, now, 60.0)
            documents.publish(out, documents.convert(doc, EnergyDocument), compact=True)
            publishes.append(time.perf_counter() - begin)
    finally:
        history.close()
    return {"build": summary(builds, 1000, 2), "publish": summary(publishes, 1000, 2),
            "bytes": out.stat().st_size}


def bench(root: Path, days: int, say: Any) -> dict[str, Any]:
    host = machine()
    path = root / "energy.sqlite3"
    say(f"  generating {days} days of ticks at {TICK_S:g} s …")
    made = generate(path, days, say)
    size = sizes(path, days)
    say(f"  building energy.json {BUILDS} times …")
    # Mid-afternoon of the last day: today has most of its slots.
    times = build_times(path, root, made["end"] - 8 * 3600)
    return {"bench": "energy", "config": {"days": days, "tick_s": TICK_S, "batch_s": BATCH_S,
                                          "state_fs": fs_type(root)},
            "generate": {k: v for k, v in made.items() if k != "end"}, "size": size,
            "build_ms": times["build"], "publish_ms": times["publish"],
            "energy_json_bytes": times["bytes"], "machine": host}


if __name__ == "__main__":
    sys.exit(main())
