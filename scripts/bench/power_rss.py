#!/usr/bin/env python3
"""Benchmark the power daemon's memory (RSS) with 3 emulated plugs, and where it goes.

The real daemon (``edgepair pi run power``, as systemd runs it) polls three emulated P110s
(two KLAP, one AES; python-kasa's real transports) every 5 s with production defaults.
RSS is sampled from /proc/PID/status. For the breakdown, the same daemon is also started
by a minimal runner (``run()`` without the CLI), and a child process imports the layers one
by one and reports RSS after each.

    .venv/bin/python scripts/bench/power_rss.py [--seconds 60] [--quick] [--json]

Loopback only; every child is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

from _common import ROOT, Children, Target, emit_json, machine, machine_line, memory, run, wait_for
from power_common import PowerSite

TARGET_RSS_MB = 60.0
SAMPLE_S = 0.5
QUICK_SECONDS = 15.0
# The daemon without the CLI: what run() itself costs.
RUNNER = """
import asyncio, sys
from pathlib import Path
from pi import config
from pi.power import daemon
asyncio.run(daemon.run(config.load(Path(sys.argv[1])), ready=lambda: None, kick=lambda n: None))
"""
# RSS after each import layer, in a fresh interpreter.
LAYERS = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
out = [("python", rss())]
for name in sys.argv[1:]:
    importlib.import_module(name)
    out.append((name, rss()))
print(json.dumps(out))
"""
LAYER_NAMES = ("asyncio", "aiohttp", "cryptography.hazmat.primitives.ciphers", "kasa",
               "pi.power.service", "pi.power.plug", "pi.cli", "handshake.command")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long each daemon runs after all plugs answer (default 60)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = QUICK_SECONDS
    if not 0 < args.seconds <= 900:
        parser.error("--seconds must be in (0, 900]")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    cli = result["daemon"]["edgepair pi run power"]
    targets = [Target("power daemon RSS peak (VmHWM), 3 plugs", cli["peak_mb"], TARGET_RSS_MB, "MB"),
               Target("power daemon RSS at the end, 3 plugs", cli["end_mb"], TARGET_RSS_MB, "MB")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    host = machine()
    site = PowerSite(3)
    children = Children()
    daemons: dict[str, Any] = {}
    try:
        await site.start()
        for label, command in (
                ("edgepair pi run power", [sys.executable, "-m", "handshake", "--log-level", "WARNING",
                                           "pi", "run", "power", "--config", str(site.config)]),
                ("run() without the CLI", [sys.executable, "-c", RUNNER, str(site.config)])):
            say(f"  {label}: {args.seconds:g} s …")
            daemons[label] = await _one(site, children, command, args.seconds)
        say("  import layers …")
        layers = _layers()
    finally:
        children.stop_all()
        await site.stop()
        site.remove()
    return {"bench": "power_rss", "config": {"plugs": 3, "interval_s": site.interval_s,
                                             "seconds": args.seconds},
            "daemon": daemons, "layers": layers, "machine": host}


async def _one(site: PowerSite, children: Children, command: list[str],
               seconds: float) -> dict[str, Any]:
    log = site.root / "daemon.log"
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    children.procs.append(proc)

    async def ready() -> bool:
        return site.all_ok()

    (site.public_dir / "power.json").unlink(missing_ok=True)
    await wait_for("every plug answering", ready, procs=(proc,), log=log)
    start = memory(proc.pid)
    sampled = [start["rss_mb"]]
    end_at = time.monotonic() + seconds
    while time.monotonic() < end_at:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        await asyncio.sleep(SAMPLE_S)
        sampled.append(memory(proc.pid)["rss_mb"])
    end = memory(proc.pid)
    if not site.all_ok():
        raise SystemExit(f"a plug stopped answering: {site.power_json()}")
    code = children.stop(proc)
    # the minimal runner has no signal handler: SIGTERM ends it with -15
    if code not in (0, -signal.SIGTERM) or "Traceback" in log.read_text():
        raise SystemExit(f"the daemon failed (exit {code}):\n{log.read_text()[-2000:]}")
    return {"start_mb": start["rss_mb"], "end_mb": end["rss_mb"], "peak_mb": end["hwm_mb"],
            "max_sampled_mb": max(sampled)}


def _layers() -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-c", LAYERS, *LAYER_NAMES], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    rows = json.loads(out.stdout)
    return [{"layer": name, "rss_mb": round(mb, 1), "added_mb": round(mb - (rows[i - 1][1] if i else 0), 1)}
            for i, (name, mb) in enumerate(rows)]


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    c = r["config"]
    print(f"power daemon RSS: {c['plugs']} emulated plugs polled every {c['interval_s']:g} s, "
          f"{c['seconds']:g} s each")
    for label, d in r["daemon"].items():
        print(f"  {label:24s} start {d['start_mb']:.1f} MB   end {d['end_mb']:.1f} MB   "
              f"peak (VmHWM) {d['peak_mb']:.1f} MB")
    print("  where it goes (a fresh interpreter importing layer after layer):")
    for layer in r["layers"]:
        print(f"    {layer['layer']:40s} {layer['rss_mb']:6.1f} MB  (+{layer['added_mb']:.1f})")
    print(machine_line(r["machine"]))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
