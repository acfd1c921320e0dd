#!/usr/bin/env python3
"""Benchmark what starting the api daemon costs: import time, RSS once up, config parse time.

- import time: a fresh interpreter imports the api daemon's entry module (median of N runs,
  wall clock, against the bare interpreter's start-up, which is subtracted);
- RSS: the real ``edgepair pi run api`` on loopback, once ``/api/v1/health`` answers and a
  few heartbeats later (VmRSS and VmHWM from ``/proc``);
- config parse: the Pi's and the host's config files, loaded and validated N times.

    .venv/bin/python scripts/bench/startup.py [--runs 7] [--json]

Every packet goes to 127.0.0.0/8; the daemons are stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
from _common import (
    ROOT,
    BenchSite,
    Children,
    Target,
    emit_json,
    machine,
    machine_line,
    memory,
    run,
    wait_http,
)

ENTRY_MODULES = {"pi run api": "pi.api", "host run": "host.agent"}
SETTLE_S = 2.0  # after health answers: the first heartbeats, publishes and pi.json
TARGET_RSS_MB = 45.0  # the api daemon's budget (scripts/bench/api_rss.py)
TARGET_IMPORT_MS = 1500.0  # a Pi 3B+ is ~6x slower than this machine
PARSE_RUNS = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="interpreters per import (default 7)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be in 1..50")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    site = BenchSite(interval=0.5, timeout=0.25, pi_log_level="WARNING")
    try:
        result: dict[str, Any] = {"machine": machine()}
        result["import_ms"] = {name: import_ms(module, args.runs)
                               for name, module in ENTRY_MODULES.items()}
        result["api"] = await api_rss(site)
        result["parse_ms"] = parse_ms(site)
    finally:
        site.remove()
    targets = [Target("api RSS once up", result["api"]["rss_mb"], TARGET_RSS_MB, "MB"),
               Target("import of the api entry", result["import_ms"]["pi run api"],
                      TARGET_IMPORT_MS, "ms")]
    if args.json:
        emit_json(result, targets)
    else:
        print(machine_line(result["machine"]))
        for name, value in result["import_ms"].items():
            print(f"import `edgepair {name}` entry: {value:.0f} ms (over a bare interpreter)")
        api = result["api"]
        print(f"edgepair pi run api: RSS {api['rss_mb']:.1f} MB once up, peak {api['peak_mb']:.1f} "
              f"MB; {api['shared_objects']} shared objects mapped")
        for side, value in result["parse_ms"].items():
            print(f"config parse ({side}): {value:.3f} ms per load")
        for target in targets:
            print(target.line())
    return 0 if all(t.passed for t in targets) else 1


def _python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - start


def import_ms(module: str, runs: int) -> float:
    """Median wall time to import ``module`` in a fresh interpreter, minus a bare start."""
    bare = statistics.median(_python("pass") for _ in range(runs))
    loaded = statistics.median(_python(f"import {module}") for _ in range(runs))
    return round(max(0.0, loaded - bare) * 1000, 1)


async def api_rss(site: BenchSite) -> dict[str, Any]:
    children = Children()
    log = site.root / "pi.log"
    try:
        proc = children.spawn(site.pi_command(), log)
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/api/v1/health", (proc,), log)
        await asyncio.sleep(SETTLE_S)
        mem = memory(proc.pid)
        with open(f"/proc/{proc.pid}/maps", encoding="utf-8") as maps:
            modules = len({line.split()[-1] for line in maps if line.rstrip().endswith(".so")})
    finally:
        children.stop_all()
    return {"rss_mb": mem["rss_mb"], "peak_mb": mem["hwm_mb"], "shared_objects": modules}


def parse_ms(site: BenchSite) -> dict[str, float]:
    from host import config as host_config  # noqa: PLC0415 - after _common's sys.path tweak
    from pi import config as pi_config  # noqa: PLC0415

    out = {}
    for side, load, path in (("pi", pi_config.load, site.pi_config),
                             ("host", host_config.load, site.host_config)):
        load(path)  # warm: the first load imports the schema
        start = time.perf_counter()
        for _ in range(PARSE_RUNS):
            load(path)
        out[side] = round((time.perf_counter() - start) / PARSE_RUNS * 1000, 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
