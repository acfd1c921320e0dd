#!/usr/bin/env python3
"""Benchmark the node daemon with 20 nodes polling every 2 s, and the firmware's heap.

The real daemon (``edgepair pi run node``) serves one real MicroPython node (the firmware on
the unix port, ``-X heapsize=100k``) and 19 Python nodes speaking the same protocol (signed
polls and reports, each with its own key), all paired through the real hello and approval.
Two jobs a second, spread over the nodes, measure the job latency due → done (the node's
report of its result). The daemon's RSS (VmRSS, VmHWM) and CPU (utime + stime) come from
/proc. The firmware's heap: the live high-water mark after a collection, the most allocated
between two collections, and the smallest heap it still runs in.

    .venv/bin/python scripts/bench/nodes.py [--seconds 60] [--quick] [--json]

Loopback only; every child is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from _common import ROOT, Target, emit_json, machine, machine_line, memory, run, summary

from handshake.client import HandshakeClient
from pi.nodes import wire
from tests.helpers import KEY
from tests.nodesite import Board, NodeSite, PyNode, until

NODES = 20
POLL_S = 2.0
TARGET_RSS_MB = 35.0
TARGET_CPU_PERCENT = 5.0
TARGET_LATENCY_P95_S = 2.5  # one poll period and the report
JOBS_PER_S = 2
QUICK_SECONDS = 20.0
HEAPS_KB = (40, 48, 56, 64)  # tried after the run: the smallest the firmware keeps polling in
HEAP_TRIAL_S = 8.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = QUICK_SECONDS
    if not 10 <= args.seconds <= 900:
        parser.error("--seconds must be in [10, 900]")
    return run(lambda: _main(args))


# What the daemon's import alone costs: the floor under its RSS (aiohttp.web is most of it).
IMPORT_FLOOR = """
import sys
from pi.nodes import daemon
for line in open("/proc/self/status"):
    if line.startswith(("VmRSS:", "VmHWM:")):
        print(line.split()[1])
"""


def import_floor_mb() -> float:
    done = subprocess.run([sys.executable, "-c", IMPORT_FLOOR], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return round(int(done.stdout.split()[0]) * 1024 / 1e6, 1)


async def _main(args: argparse.Namespace) -> int:
    # As systemd runs it (edgepair-pi-node.service): two malloc arenas.
    os.environ["MALLOC_ARENA_MAX"] = "2"
    root = Path(tempfile.mkdtemp(prefix="edgepair-bench-nodes-"))
    site = NodeSite(root, poll_s=POLL_S, lost_after_s=10, offline_after_s=10, grace_s=60,
                    hello_per_min=600)
    try:
        result = await bench(site, args.seconds)
    finally:
        site.close()
        shutil.rmtree(root, ignore_errors=True)
    targets = [
        Target(f"node daemon RSS peak (VmHWM), {NODES} nodes polling every {POLL_S:g} s",
               result["daemon"]["hwm_mb"], TARGET_RSS_MB, "MB"),
        Target("node daemon CPU", result["daemon"]["cpu_percent"], TARGET_CPU_PERCENT, "%"),
        Target("job latency due → done p95", result["latency_s"]["p95"], TARGET_LATENCY_P95_S, "s"),
    ]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def approve(site: NodeSite, hwid: str, code: str, name: str) -> None:
    async with HandshakeClient(site.url, KEY) as admin:
        await admin.request("POST", f"{wire.PREFIX}/admin/approve",
                            {"hwid": hwid, "code": code, "name": name, "role": "bench"})


async def pair_board(site: NodeSite) -> Board:
    board = site.bundle("mp-node", "relay", "temperature", "motor")
    board.inputs(onewire={"4": 20.5})
    board.start()
    await until(lambda: site.entry("mp-node"), timeout=20, what="the MicroPython node's hello")
    await approve(site, "mp-node", board.code, "n00")
    await until(lambda: (e := site.entry("mp-node")) and e.state == "online", timeout=20,
                what="the MicroPython node online")
    return board


async def hello(node: PyNode) -> None:
    """A hello, again after the rate limit's Retry-After (one address says them all here)."""
    while (await node.hello())[0] == 429:
        await asyncio.sleep(0.1)


async def py_loop(node: PyNode, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, POLL_S))  # nodes boot at different times
    while not stop.is_set():
        started = time.monotonic()
        await node.cycle(temperature=round(random.uniform(19, 23), 1))
        await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - started)))


async def add_jobs(site: NodeSite, start: float, seconds: float) -> int:
    """JOBS_PER_S relay jobs a second from ``start`` on, round robin over the nodes."""
    count = 0
    async with HandshakeClient(site.url, KEY) as admin:
        for second in range(int(seconds)):
            at = datetime.fromtimestamp(start + second, UTC).strftime("%H:%M:%S")
            for k in range(JOBS_PER_S):
                node = (second * JOBS_PER_S + k) % NODES
                await admin.request("POST", f"{wire.PREFIX}/admin/jobs", {"job": {
                    "id": f"j{count}", "node": f"n{node:02d}", "capability": "relay",
                    "params": {"on": count % 2 == 0}, "at": at}})
                count += 1
    return count


async def bench(site: NodeSite, seconds: float) -> dict[str, Any]:
    await site.start()
    assert site.daemon is not None
    pid = site.daemon.pid
    board = await pair_board(site)
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        nodes = [PyNode(site.url, f"py-{i:02d}", f"CODE{i:04d}", session) for i in range(1, NODES)]
        for i, node in enumerate(nodes, start=1):
            await hello(node)
            await approve(site, node.hwid, node.code, f"n{i:02d}")
            await hello(node)
        loops = [asyncio.create_task(py_loop(n, stop)) for n in nodes]
        try:
            warm = 5.0
            jobs_from = time.time() + warm + 3
            added = await add_jobs(site, jobs_from, seconds - 8)
            await asyncio.sleep(max(0.0, jobs_from - 3 - time.time()))
            cpu0, wall0 = cpu_seconds(pid), time.monotonic()
            samples = []
            while time.monotonic() - wall0 < seconds:
                samples.append(memory(pid)["rss_mb"])
                await asyncio.sleep(0.5)
            cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0) * 100
            mem = memory(pid)
            await asyncio.sleep(POLL_S * 2)  # the last jobs' reports
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
    with sqlite3.connect(site.state / "private/node-jobs.sqlite") as db:
        rows = db.execute("SELECT node, status, done_at - due FROM executions").fetchall()
    latencies = [r[2] for r in rows if r[1] == "done"]
    heap = board.state().get("heap", {})
    heaps = await smallest_heap(site, board)
    return {
        "machine": machine(), "nodes": NODES, "poll_s": POLL_S, "seconds": seconds,
        "daemon": {"rss_mb": mem["rss_mb"], "hwm_mb": mem["hwm_mb"],
                   "import_floor_mb": import_floor_mb(),
                   "rss_median_mb": sorted(samples)[len(samples) // 2],
                   "cpu_percent": round(cpu, 2)},
        "jobs": {"added": added, "executions": len(rows), "done": len(latencies),
                 "not_done": [r for r in rows if r[1] != "done"][:5],
                 "micropython_done": sum(1 for r in rows if r[0] == "n00" and r[1] == "done"),
                 "slowest": sorted(([r[0], round(r[2], 3)] for r in rows if r[1] == "done"),
                                   key=lambda r: -r[1])[:5]},
        "latency_s": summary(latencies) if latencies else {"p95": float("inf")},
        "firmware_heap": {"heapsize_kb": 100, **heap, "runs_in_kb": heaps},
    }


async def smallest_heap(site: NodeSite, board: Board) -> dict[str, bool]:
    """The approved board restarted with smaller heaps: does it keep polling?"""
    out = {}
    for kb in HEAPS_KB:
        board.stop()
        log_size = len(board.log())
        board.start(heap=f"{kb}k")
        first = site.entry("mp-node")
        before = first.last_seen if first else None
        await asyncio.sleep(HEAP_TRIAL_S)
        entry = site.entry("mp-node")
        fresh = board.log()[log_size:]
        out[str(kb)] = bool(entry and entry.last_seen != before and "MemoryError" not in fresh
                            and board.proc is not None and board.proc.poll() is None)
    board.stop()
    return out


def _print(result: dict[str, Any], targets: list[Target]) -> None:
    d, lat, heap, jobs = result["daemon"], result["latency_s"], result["firmware_heap"], result["jobs"]
    print(f"node daemon, {result['nodes']} nodes (1 MicroPython, {result['nodes'] - 1} Python) "
          f"polling every {result['poll_s']:g} s, {result['seconds']:g} s measured")
    print(machine_line(result["machine"]))
    print(f"  RSS        {d['rss_mb']} MB at the end, peak {d['hwm_mb']} MB, median {d['rss_median_mb']} MB "
          f"(importing the daemon alone: {d['import_floor_mb']} MB)")
    print(f"  CPU        {d['cpu_percent']} % of one core")
    print(f"  jobs       {jobs['done']} of {jobs['executions']} done ({jobs['added']} added, "
          f"{jobs['micropython_done']} on the MicroPython node)")
    if "median" in lat:
        print(f"  latency    due → done: median {lat['median']} s, p95 {lat['p95']} s, max {lat['max']} s")
    print(f"  firmware   heap {heap['heapsize_kb']} kB: live peak {heap.get('live_peak', 0) / 1024:.1f} kB "
          f"after a collection, {heap.get('cycle_peak', 0) / 1024:.1f} kB most between two; runs in "
          + ", ".join(f"{kb} kB: {'yes' if ok else 'no'}" for kb, ok in heap["runs_in_kb"].items()))
    for target in targets:
        print("  " + target.line())


if __name__ == "__main__":
    raise SystemExit(main())
