#!/usr/bin/env python3
"""Benchmark going-offline with a 1 MB snapshot: signed POST → ack, p50/p99.

The real Pi api daemon (``edgepair pi run api``) runs as a process with a real host agent
on loopback. This process sends the signed ``POST /api/v1/host/going-offline`` through
``handshake.client.HandshakeClient`` and times it up to the ack, which the Pi sends after it
switched DNS to itself and wrote snapshot.json atomically (fsync, rename, fsync of the
directory). A ``coming-online`` between two requests makes each one a real transition.
The body is serialized once up front, so the figure is the wire round trip plus the Pi's
work, not this process's JSON encoder; a 1 KB snapshot is measured the same way.

    .venv/bin/python scripts/bench/going_offline.py [--requests 200] [--size 1000000]
                                                    [--quick] [--json]

Every packet goes to 127.0.0.0/8; all daemons are stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    HOST_ADDRESS,
    PI_ADDRESS,
    BenchSite,
    Children,
    Target,
    emit_json,
    fs_type,
    machine,
    machine_line,
    resolve,
    run,
    summary,
    wait_for,
    wait_http,
)

from handshake.client import HandshakeClient
from handshake.messages import GoingOffline
from handshake.util import atomic
from pi.hostloop import SNAPSHOT_SCHEMA

TARGET_P99_MS = 100.0
LARGE_BYTES = 1_000_000
SMALL_BYTES = 1_000
WARMUP = 3  # first transitions warm the connection and the Pi's code paths: not counted
QUICK_REQUESTS = 30
GOING_OFFLINE = "/api/v1/host/going-offline"
COMING_ONLINE = "/api/v1/host/coming-online"
JSON_HEADERS = {"Content-Type": "application/json"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200,
                        help="measured going-offline requests per snapshot size (default 200)")
    parser.add_argument("--size", type=int, default=LARGE_BYTES,
                        help=f"large snapshot size in bytes of JSON (default {LARGE_BYTES})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated snapshot")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = QUICK_REQUESTS
    if not 1 <= args.requests <= 5000 or not SMALL_BYTES <= args.size <= 3_500_000:
        parser.error("--requests must be in [1, 5000] and --size in [1000, 3500000] "
                     "(the Pi's body limit is 4 MiB)")
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    large, small = result["large"]["going_offline_ms"], result["small"]["going_offline_ms"]
    targets = [Target(f"going-offline {result['large']['snapshot_bytes'] / 1e6:.2f} MB p99",
                      large["p99"], TARGET_P99_MS, "ms", strict=True),
               Target("going-offline 1 KB p99", small["p99"], TARGET_P99_MS, "ms", strict=True)]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    site = BenchSite(interval=1.0, timeout=0.5)
    children = Children()
    pi_log = site.root / "pi.log"

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    snapshots = {"small": make_snapshot(SMALL_BYTES, args.seed),
                 "large": make_snapshot(args.size, args.seed)}
    try:
        pi = children.spawn(site.pi_command(), pi_log)
        host = children.spawn(site.host_command(), site.root / "host.log")
        result: dict[str, Any] = {"bench": "going_offline", "requests": args.requests,
                                  "state_fs": fs_type(site.root.parent), "machine": machine()}
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/api/v1/health", (pi, host), pi_log)
            await wait_http(session, site.host_url + "/api/v1/health", (pi, host), pi_log)

            async def online() -> bool:
                return await resolve(site.dns_port) == HOST_ADDRESS

            await wait_for("the host online (DNS → host)", online, procs=(pi, host), log=pi_log)
            client = HandshakeClient(site.api, site.key, session=session)
            for name in ("small", "large"):
                say(f"  {name} snapshot: {args.requests} transitions …")
                result[name] = await _transitions(client, snapshots[name], args.requests)
                result[name]["snapshot_json_on_disk_bytes"] = \
                    (site.public_dir / "snapshot.json").stat().st_size
                if await resolve(site.dns_port) != PI_ADDRESS:
                    raise SystemExit("after going-offline the name does not answer the Pi")
                if pi.poll() is not None:
                    raise SystemExit(f"the Pi api daemon exited with {pi.returncode}")
            result["large"]["pi_side_estimate_ms"] = _pi_side_estimate(
                snapshots["large"], site.root / "estimate")
        children.stop(host)
        code = children.stop(pi)
        log_text = pi_log.read_text(errors="replace")
        if code != 0 or "Traceback" in log_text:
            raise SystemExit(f"the Pi api daemon failed (exit {code}):\n{log_text[-3000:]}")
    finally:
        children.stop_all()
        site.remove()
    return result


async def _transitions(client: HandshakeClient, snapshot: dict[str, Any],
                       count: int) -> dict[str, Any]:
    """``count`` timed going-offline requests, each after an (also timed) coming-online."""
    started = time.perf_counter()
    body = json.dumps({"reason": "suspend", "wake_at": None, "snapshot": snapshot}).encode()
    encode_s = time.perf_counter() - started
    back = json.dumps({"boot_id": "0" * 32}).encode()
    offline: list[float] = []
    online: list[float] = []
    for n in range(WARMUP + count):
        begin = time.perf_counter()
        answer = await client.request("POST", COMING_ONLINE, raw=back, headers=JSON_HEADERS)
        middle = time.perf_counter()
        _check(answer, "online", "host")
        answer = await client.request("POST", GOING_OFFLINE, raw=body, headers=JSON_HEADERS)
        end = time.perf_counter()
        _check(answer, "going_offline", "pi")
        if n >= WARMUP:
            online.append(middle - begin)
            offline.append(end - middle)
    return {"snapshot_bytes": len(json.dumps(snapshot)), "body_bytes": len(body),
            "client_encode_ms": round(encode_s * 1000, 2),
            "going_offline_ms": summary(offline, scale=1000, digits=2),
            "coming_online_ms": summary(online, scale=1000, digits=2)}


def _pi_side_estimate(snapshot: dict[str, Any], directory: Path) -> dict[str, float]:
    """The api daemon's CPU work for one snapshot, redone here with the same functions."""
    body = json.dumps({"reason": "suspend", "wake_at": None, "snapshot": snapshot}).encode()
    document = {"schema": SNAPSHOT_SCHEMA, "generated_at": "2025-01-15T22:30:00Z",
                "interval_s": None, "received_at": "2025-01-15T22:30:00Z", "reason": "suspend",
                "wake_at": None, "snapshot": snapshot}
    path = directory / "snapshot.json"
    parse = _median_ms(lambda: GoingOffline.from_json(json.loads(body)))
    write_json = _median_ms(lambda: atomic.write_json(path, document))
    data = path.read_bytes()
    write_bytes = _median_ms(lambda: atomic.write_bytes(path, data))
    return {"parse_ms": parse, "write_json_ms": write_json, "of_which_write_fsync_ms": write_bytes}


def _median_ms(work: Callable[[], object], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
    return round(statistics.median(times) * 1000, 1)


def _check(answer: Any, state: str, dns_target: str) -> None:
    if not (isinstance(answer, dict) and answer.get("ack") is True
            and answer.get("state") == state and answer.get("dns_target") == dns_target):
        raise SystemExit(f"expected an ack with state {state}, DNS → {dns_target}: {answer}")


def make_snapshot(target_bytes: int, seed: int) -> dict[str, Any]:
    """A host snapshot like host.snapshot builds, plus a file listing grown to ``target_bytes``."""
    rng = random.Random(seed)
    now = datetime(2025, 1, 15, 22, 30, tzinfo=UTC)
    volumes = []
    for path, total in (("/", 250e9), ("/srv", 8e12), ("/srv/media", 12e12),
                        ("/srv/backup", 4e12)):
        used = int(total * rng.uniform(0.2, 0.85))
        volumes.append({"path": path, "total_bytes": int(total), "used_bytes": used,
                        "free_bytes": int(total) - used,
                        "used_percent": round(100 * used / total, 1)})
    units = [{"name": name, "load_state": "loaded", "active_state": "active",
              "sub_state": "running"}
             for name in ("smbd.service", "nmbd.service", "nfs-server.service",
                          "docker.service", "restic-backup.timer", "jellyfin.service")]
    snapshot: dict[str, Any] = {
        "hostname": "nas", "uptime_s": 523_614.2, "boot_id": f"{rng.getrandbits(128):032x}",
        "taken_at": now.isoformat().replace("+00:00", "Z"), "volumes": volumes, "units": units,
        "backup": {"marker": "/srv/backup/.last-success", "at": "2025-01-15T03:12:09Z",
                   "age_s": 69_651.0},
        "health": "ok", "files": [],
    }
    while len(json.dumps(snapshot)) > target_bytes and len(units) > 1:
        units.pop()  # a small host: fewer units and volumes, no file listing
        if len(volumes) > 1:
            volumes.pop()
    size = len(json.dumps(snapshot))
    users = ("alice", "bob", "media", "backup")
    shares = ("photos", "documents", "music", "video", "projects")
    files: list[dict[str, Any]] = snapshot["files"]
    while True:
        mtime = now - timedelta(seconds=rng.randrange(3 * 365 * 86400))
        share = rng.choice(shares)
        extension = rng.choice(("jpg", "pdf", "flac", "mkv", "txt"))
        entry = {
            "path": f"/srv/media/{share}/{mtime.year}/{mtime.month:02}/"
                    f"{share[:3].upper()}_{rng.randrange(10**5):05}.{extension}",
            "size": rng.randrange(1, 4 * 10**9), "mtime": mtime.isoformat().replace("+00:00", "Z"),
            "mode": rng.choice(("0644", "0640", "0600")), "owner": rng.choice(users),
            "sha256": f"{rng.getrandbits(256):064x}",
        }
        grown = size + len(json.dumps(entry)) + (2 if files else 0)  # ", " between items
        if grown > target_bytes:
            return snapshot
        files.append(entry)
        size = grown


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    print(f"going-offline round trip (signed POST → ack: DNS switched, snapshot.json written "
          f"and fsynced on {r['state_fs']}); {r['requests']} transitions per size")
    for name in ("large", "small"):
        s = r[name]
        g, c = s["going_offline_ms"], s["coming_online_ms"]
        print(f"  {s['snapshot_bytes'] / 1000:8.1f} KB snapshot ({s['body_bytes']} B body, "
              f"{s['snapshot_json_on_disk_bytes']} B snapshot.json)")
        print(f"    going-offline  p50 {g['median']:.2f} ms   p99 {g['p99']:.2f} ms   "
              f"max {g['max']:.2f} ms   mean {g['mean']:.2f} ms")
        print(f"    coming-online  p50 {c['median']:.2f} ms   p99 {c['p99']:.2f} ms")
        print(f"    (client-side json.dumps of the body, not in the figure: "
              f"{s['client_encode_ms']:.1f} ms)")
        if "pi_side_estimate_ms" in s:
            e = s["pi_side_estimate_ms"]
            print(f"    where the Pi's time goes (same functions, timed in this process): "
                  f"parse {e['parse_ms']:.1f} ms, snapshot.json atomic.write_json "
                  f"{e['write_json_ms']:.1f} ms (of which write + fsync "
                  f"{e['of_which_write_fsync_ms']:.1f} ms, the rest is encoding)")
    print(machine_line(r["machine"]))
    for target in targets:
        print(f"  {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
