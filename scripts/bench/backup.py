#!/usr/bin/env python3
"""Benchmark the Pi's backup at scale: a year of power history (3 plugs, the daemon's own
rows), packed, sent to the real host agent and restored.

The history is generated through the power daemon's code paths (as ``power_year.py``
does) into the Pi's private/ beside a usage ledger and a control baseline. Then the real
``BackupService.attempt`` builds the archive (sqlite online backup API, gzip) and streams
it signed to a real host agent on loopback, and ``edgepair pi restore``'s code rebuilds a
wiped state dir from the host's copy. Figures: archive size against the databases, build
and upload time and throughput, bytes the Pi wrote to its card for one backup, peak RSS
added, restore time.

    .venv/bin/python scripts/bench/backup.py [--plugs 3] [--days 365] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    BenchSite,
    Children,
    Target,
    emit_json,
    fs_type,
    io_counters,
    machine,
    machine_line,
    run,
    wait_http,
)
from power_year import generate

from pi import config as pi_config
from pi import state as sm
from pi.backup import restore
from pi.backup.config import BackupConfig
from pi.backup.service import BackupService

QUICK = {"plugs": 1, "days": 30}
# A Pi 3B+ on its SD card should finish a year's backup well within its every_h.
TARGET_TOTAL_S = 120.0
TARGET_RSS_MB = 30.0
BASELINE = b'{"profile": "deye-sg-lp1", "taken_at": "2026-01-01T10:00:00Z", "registers": {}}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugs", type=int, default=3, help="plugs with a year each (default 3)")
    parser.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['plugs']} plug, {QUICK['days']} days")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args(argv)
    if args.generate is not None:
        generate(args.generate, args.plugs, args.days, lambda text: None)
        return 0
    if args.quick:
        args.plugs, args.days = QUICK["plugs"], QUICK["days"]
    if not (1 <= args.plugs <= 10 and 1 <= args.days <= 800):
        parser.error("--plugs must be in [1, 10], --days in [1, 800]")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    targets = [Target("backup build + upload", result["attempt_s"], TARGET_TOTAL_S, "s"),
               Target("peak RSS added by a backup", result["rss_added_mb"], TARGET_RSS_MB, "MB")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    site = BenchSite(interval=1.0, timeout=0.5)
    children = Children()
    try:
        config = pi_config.load(site.pi_config)
        private = config.private_dir
        private.mkdir(parents=True)
        (private / "control-baseline.json").write_bytes(BASELINE)
        say(f"  generating {args.days} days × {args.plugs} plugs …")
        # In a child: its memory must not hide the backup's peak RSS in this process.
        await asyncio.to_thread(subprocess.run, [
            sys.executable, __file__, "--generate", str(private / "power.sqlite3"),
            "--plugs", str(args.plugs), "--days", str(args.days)], check=True)
        databases_mb = sum(p.stat().st_size for p in private.glob("*.sqlite3")) / 1e6
        host = children.spawn(site.host_command(), site.root / "host.log")
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.host_url + "/api/v1/health", procs=(host,),
                            log=site.root / "host.log")
        status = sm.HostStatus(state=sm.HostState.ONLINE, since=time.time() - 3600)
        service = BackupService(config, BackupConfig(after_online_s=0), site.key,
                                lambda: status)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        io_before = io_counters(os.getpid())
        say("  backing up to the host agent …")
        started = time.perf_counter()
        ok = await service.attempt()
        attempt_s = time.perf_counter() - started
        io_after = io_counters(os.getpid())
        rss_added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
        if not ok:
            raise SystemExit(f"backup failed: {service.outcome.last_error}")
        last = service.outcome.last_ok or {}
        archive = site.root / "host-state" / "backups" / str(last["name"])
        children.stop(host)

        say("  restoring onto a wiped state dir …")
        shutil.rmtree(config.pi.state_dir)
        started = time.perf_counter()
        restore.restore(archive, config.file, say=lambda line: None)
        restore_s = time.perf_counter() - started
        restored_mb = (private / "power.sqlite3").stat().st_size / 1e6
        archive_mb = archive.stat().st_size / 1e6
        return {
            "bench": "backup",
            "config": {"plugs": args.plugs, "days": args.days, "state_fs": fs_type(site.root)},
            "databases_mb": round(databases_mb, 1), "archive_mb": round(archive_mb, 1),
            "ratio": round(archive_mb / databases_mb, 3),
            "attempt_s": round(attempt_s, 2),
            "throughput_mb_s": round(databases_mb / attempt_s, 1),
            "pi_wrote_mb": round((io_after["write_bytes"] - io_before["write_bytes"]) / 1e6, 1),
            "rss_added_mb": round(rss_added, 1),
            "restore_s": round(restore_s, 2), "restored_db_mb": round(restored_mb, 1),
            "files": last.get("files"), "machine": machine()}
    finally:
        children.stop_all()
        site.remove()


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    print(f"backup of {r['config']['days']} days × {r['config']['plugs']} plug(s) "
          f"({r['files']} files, on {r['config']['state_fs']})")
    print(f"  databases  {r['databases_mb']} MB → archive {r['archive_mb']} MB "
          f"(×{r['ratio']}, gzip level 6)")
    print(f"  backup     build + upload to the host agent {r['attempt_s']} s "
          f"({r['throughput_mb_s']} MB/s of database); the Pi wrote {r['pi_wrote_mb']} MB "
          f"to its disk (snapshot + archive, removed after)")
    print(f"  memory     peak RSS added {r['rss_added_mb']} MB")
    print(f"  restore    {r['restore_s']} s (verify every member, then write)")
    print(machine_line(r['machine']))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
