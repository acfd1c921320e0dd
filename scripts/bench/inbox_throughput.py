#!/usr/bin/env python3
"""Benchmark the inbox against ``rsync --remove-source-files`` to an rsync daemon.

The same files go both ways, one after the other, on loopback and one disk:

1. rsync: ``rsync -a --remove-source-files SRC/ rsync://127.0.0.1:PORT/inbox/NAME/`` to an
   rsync daemon this benchmark starts (its own rsyncd.conf, a free high port). Timed: the
   client's run. rsync checks every file it transfers with its own whole-file checksum
   (negotiated: xxh128 or md5) and deletes the source only after the receiver confirms.
   The benchmark then hashes what arrived (untimed).
2. edgepair: the files rsync delivered are moved into the Pi's inbox (one rename) while
   host.json says "offline" (the host asleep, as files usually wait). The daemon lets them
   settle and, as it does for files that wait, hashes the large ones ahead. Once inbox.json
   shows every file ready (and large ones hashed), host.json turns "online" and the clock
   runs until the last file has left the Pi. The real inbox daemon (``edgepair pi run
   inbox``) streams them to the real host agent (``edgepair host run``): SHA-256 on the Pi
   (ahead, or while reading a small file), SHA-256 again on the host over the bytes it
   wrote, fsync of file and folder, a receipt, then the Pi deletes. The benchmark hashes
   what arrived (untimed). The settle + hash-ahead time is reported beside.

Each round starts after ``sync`` (no dirty pages of the step before) and moves the files
back for the next; each case runs 3 rounds and counts the medians (this shared VM times
single large writes unevenly, and rsync's time for many small files varies several-fold).
Ratio = rsync time / edgepair time (≥ 1: edgepair is faster); the targets use it. rsync
does not fsync, the inbox does (a file is never confirmed before it is durable), so the
ratio against rsync followed by ``sync`` is reported too. Also the inbox daemon's RSS.

    .venv/bin/python scripts/bench/inbox_throughput.py [--quick] [--json] [--dir DIR]
                                                        [--parallel N]

Everything listens on 127.0.0.1; children are stopped and files removed on exit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _common import free_port, memory  # noqa: E402

from handshake.auth import keygen  # noqa: E402
from handshake.inboxwire import SMALL_FILE_BYTES  # noqa: E402
from handshake.util import atomic  # noqa: E402

MIB = 1024 * 1024
FULL = {"large": (1, 1024 * MIB), "small": (10_000, 10 * 1024)}
QUICK = {"large": (1, 64 * MIB), "small": (1_000, 10 * 1024)}
TARGETS = {"large": 0.9, "small": 0.5}
# Rounds per case; the medians count: this shared VM times single large writes unevenly,
# and rsync's per-file round trips (--remove-source-files) vary several-fold between runs.
RUNS = {"large": 3, "small": 3}
FILES_PER_FOLDER = 100
# Spawning Python and importing aiohttp takes a moment on a busy machine.
START_TIMEOUT_S = 30.0
# The longest a phase may take before the benchmark gives up (1 GiB on a slow disk).
PHASE_TIMEOUT_S = 600.0
SETTLE_S = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB and 1,000 × 10 KiB")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the work folder (default: the system temp folder)")
    parser.add_argument("--parallel", type=int, default=2, help="[inbox] parallel (default 2)")
    parser.add_argument("--case", choices=sorted(FULL), action="append",
                        help="run only this case (repeatable; default: all)")
    args = parser.parse_args()
    for tool in ("rsync",):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y rsync")
    bench = Bench(Path(tempfile.mkdtemp(prefix="edgepair-inbox-bench-", dir=args.dir)),
                  args.parallel)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        results = {name: bench.run_case(name, count, size, RUNS[name], args.json)
                   for name, (count, size) in (QUICK if args.quick else FULL).items()
                   if not args.case or name in args.case}
        rss = bench.daemon_memory()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.close()
    report(results, rss, args)
    return 0 if all(r["ratio"] >= TARGETS[n] for n, r in results.items()) else 1


class Bench:
    """A work folder with an rsync daemon, a host agent and an inbox daemon."""

    def __init__(self, work: Path, parallel: int) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pi_inbox = work / "pi-inbox"
        self.host_inbox = work / "host-inbox"
        self.rsync_dst = work / "rsync-dst"
        self.public = work / "pi-state" / "public"
        for folder in (self.pi_inbox, self.host_inbox, self.rsync_dst, self.public):
            folder.mkdir(parents=True)
        self._write_configs(parallel)
        self.rsync_port = free_port()
        (work / "rsyncd.conf").write_text(
            f"use chroot = no\nreverse lookup = no\npid file = {work}/rsyncd.pid\n"
            f"[inbox]\npath = {self.rsync_dst}\nread only = no\nuid = {os.getuid()}\n"
            f"gid = {os.getgid()}\n")
        self.rsyncd = self._spawn(["rsync", "--daemon", "--no-detach",
                                   f"--config={work}/rsyncd.conf", f"--port={self.rsync_port}",
                                   "--address=127.0.0.1", f"--log-file={work}/rsyncd.log"],
                                  "rsyncd.log.out")
        self.set_host("offline")
        self.host = self._spawn([sys.executable, "-m", "handshake", "host", "run", "--config",
                                 str(work / "host.toml")], "host.log")
        self.daemon = self._spawn([sys.executable, "-m", "handshake", "--log-level", "WARNING",
                                   "pi", "run", "inbox", "--config", str(work / "pi.toml")],
                                  "inbox.log")
        wait(lambda: port_open(self.host_port) and port_open(self.rsync_port)
             and (self.public / "inbox.json").exists(), START_TIMEOUT_S, "daemons to start",
             self.procs)

    def _write_configs(self, parallel: int) -> None:
        key = keygen()
        secrets = self.work / "secrets.toml"
        secrets.write_text(f'handshake_key = "{key}"\n')
        secrets.chmod(0o600)
        self.host_port = free_port()
        (self.work / "pi.toml").write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{self.work / 'pi-state'}"
secrets_file = "{secrets}"
[api]
listen = "127.0.0.1:{free_port()}"
[host]
address = "127.0.0.3"
mac = "02:ED:6E:9A:17:01"
url = "http://127.0.0.1:{self.host_port}"
[wol]
target = "127.0.0.1"
port = {free_port(socket.SOCK_DGRAM)}
[inbox]
dir = "{self.pi_inbox}"
settle_s = {SETTLE_S}
parallel = {parallel}
""")
        (self.work / "host.toml").write_text(f"""
[host]
listen = "127.0.0.1:{self.host_port}"
state_dir = "{self.work / 'host-state'}"
secrets_file = "{secrets}"
[pi]
url = "http://127.0.0.1:9"
[inbox]
dir = "{self.host_inbox}"
min_free_bytes = 0
""")

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        with (self.work / log).open("ab") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def set_host(self, state: str) -> None:
        atomic.write_json(self.public / "host.json", {"state": state})

    def run_case(self, name: str, count: int, size: int, runs: int,
                 quiet: bool) -> dict[str, Any]:
        """``runs`` alternating rounds of rsync then the inbox over the same files."""
        say = (lambda *_: None) if quiet else print
        src = self.work / f"src-{name}"
        say(f"{name}: writing {count} files of {human(size)} of random data …")
        expected = make_files(src, count, size)
        rounds = []
        for n in range(runs):
            rounds.append(self._round(f"{name}-{n}", src, expected, size))
            say(f"{name} round {n + 1}/{runs}: rsync {rounds[-1]['rsync_s']:.2f} s "
                f"(+ sync {rounds[-1]['rsync_then_sync_s']:.2f} s), "
                f"inbox {rounds[-1]['inbox_s']:.2f} s")
        total = count * size
        rsync_s = statistics.median(r["rsync_s"] for r in rounds)
        durable_s = statistics.median(r["rsync_then_sync_s"] for r in rounds)
        inbox_s = statistics.median(r["inbox_s"] for r in rounds)
        return {"files": count, "file_bytes": size, "total_bytes": total, "runs": rounds,
                "rsync_s": round(rsync_s, 3), "rsync_then_sync_s": round(durable_s, 3),
                "ratio_vs_rsync_then_sync": round(durable_s / inbox_s, 3),
                "inbox_s": round(inbox_s, 3),
                "rsync_mb_s": round(total / rsync_s / 1e6, 1),
                "inbox_mb_s": round(total / inbox_s / 1e6, 1),
                "ratio": round(rsync_s / inbox_s, 3), "target": TARGETS[name],
                "settle_and_hash_ahead_s": statistics.median(r["waited_s"] for r in rounds)}

    def _round(self, tag: str, src: Path, expected: dict[str, str], size: int) -> dict[str, float]:
        """rsync SRC → rsyncd, then the same files through the inbox; back to SRC after."""
        count = len(expected)
        os.sync()  # both start without dirty pages of the step before
        started = time.monotonic()
        subprocess.run(["rsync", "-a", "--remove-source-files", f"{src}/",
                        f"rsync://127.0.0.1:{self.rsync_port}/inbox/{tag}/"], check=True)
        rsync_s = time.monotonic() - started
        os.sync()  # what rsync left in the page cache, made durable as the inbox does
        rsync_durable_s = time.monotonic() - started
        if count_files(src):
            sys.exit("rsync left source files behind")
        verify(self.rsync_dst / tag, expected, "rsync")

        # A new path per round: the host would otherwise acknowledge the earlier receipts.
        os.rename(self.rsync_dst / tag, self.pi_inbox / tag)
        # The Pi hashes large files while they wait for the host: start when it is idle.
        hashed = count if size > SMALL_FILE_BYTES else 0
        settle_started = time.monotonic()
        wait(lambda: pending(self.public) == (count, hashed), PHASE_TIMEOUT_S,
             f"{count} files to settle", self.procs)
        waited_s = time.monotonic() - settle_started
        os.sync()
        started = time.monotonic()
        self.set_host("online")
        poll = 0.02 if count < 100 else 0.1
        wait(lambda: count_files(self.pi_inbox) == 0, PHASE_TIMEOUT_S, f"{tag} to flush",
             self.procs, every=poll)
        inbox_s = time.monotonic() - started
        self.set_host("offline")
        verify(self.host_inbox / tag, expected, "edgepair")
        shutil.rmtree(src)
        os.rename(self.host_inbox / tag, src)  # the same files for the next round
        return {"rsync_s": round(rsync_s, 3), "rsync_then_sync_s": round(rsync_durable_s, 3),
                "inbox_s": round(inbox_s, 3), "waited_s": round(waited_s, 3)}

    def daemon_memory(self) -> dict[str, float]:
        mb = memory(self.daemon.pid)
        return {"rss_mb": mb["rss_mb"], "peak_rss_mb": mb["hwm_mb"]}

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def human(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // 1024} KiB"


def make_files(folder: Path, count: int, size: int) -> dict[str, str]:
    """``count`` files of random bytes (100 to a folder); their SHA-256 by relative path."""
    expected = {}
    for i in range(count):
        rel = f"d{i // FILES_PER_FOLDER:03d}/f{i:05d}.bin" if count > 1 else "big.bin"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        with path.open("wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 16 * MIB))
                hasher.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        expected[rel] = hasher.hexdigest()
    return expected


def verify(folder: Path, expected: dict[str, str], who: str) -> None:
    for rel, sha in expected.items():
        hasher = hashlib.sha256()
        with (folder / rel).open("rb") as f:
            while chunk := f.read(16 * MIB):
                hasher.update(chunk)
        if hasher.hexdigest() != sha:
            sys.exit(f"{who}: {rel} arrived with the wrong content")
    if count_files(folder) != len(expected):
        sys.exit(f"{who}: {count_files(folder)} files arrived, expected {len(expected)}")


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def pending(public: Path) -> tuple[int, int]:
    """inbox.json: (ready files, files hashed ahead)."""
    try:
        doc = atomic.read_json(public / "inbox.json")
    except (OSError, ValueError):
        return -1, -1
    if not isinstance(doc, dict):
        return -1, -1
    return int(doc["pending"]["ready_files"]), int(doc["pending"]["hashed_files"])


def wait(check: Callable[[], bool], timeout: float, what: str,
         procs: list[subprocess.Popen[bytes]], every: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not check():
        if any(p.poll() is not None for p in procs):
            sys.exit(f"a child exited while waiting for {what}")
        if time.monotonic() > end:
            sys.exit(f"{what}: not done within {timeout:g} s")
        time.sleep(every)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def report(results: dict[str, dict[str, Any]], rss: dict[str, float],
           args: argparse.Namespace) -> None:
    targets = [{"name": f"{name}_ratio", "value": r["ratio"], "limit": r["target"],
                "unit": "× rsync", "pass": r["ratio"] >= r["target"]}
               for name, r in results.items()]
    if args.json:
        print(json.dumps({"benchmark": "inbox_throughput", "quick": args.quick,
                          "parallel": args.parallel, "cpus": os.cpu_count(),
                          "loadavg_1m": round(os.getloadavg()[0], 2), "cases": results,
                          "inbox_daemon": rss, "targets": targets,
                          "pass": all(t["pass"] for t in targets)}))
        return
    print("\ninbox vs rsync --remove-source-files (loopback, one disk; noisy on a shared machine)")
    for name, r in results.items():
        print(f"  {name:5} {r['files']:>6} × {human(r['file_bytes'])}, median of "
              f"{len(r['runs'])}: "
              f"rsync {r['rsync_s']:.2f} s ({r['rsync_mb_s']:g} MB/s), "
              f"inbox {r['inbox_s']:.2f} s ({r['inbox_mb_s']:g} MB/s); settle + hash ahead "
              f"before the clock {r['settle_and_hash_ahead_s']:.2f} s")
    for t in targets:
        print(f"  {t['name']} {t['value']:.2f} (target ≥ {t['limit']}): "
              f"{'PASS' if t['pass'] else 'FAIL'}")
    for name, r in results.items():
        print(f"  {name}: against rsync followed by sync (durable, as the inbox confirms): "
              f"{r['ratio_vs_rsync_then_sync']:.2f}×")
    print(f"  inbox daemon RSS {rss['rss_mb']} MB (peak {rss['peak_rss_mb']} MB)")


if __name__ == "__main__":
    sys.exit(main())
