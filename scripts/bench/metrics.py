#!/usr/bin/env python3
"""Benchmark ``GET /metrics``: its render time with 3 plugs and a year of history on disk,
and the RSS prometheus-client adds against a hand-written exposition.

A year of 5-s readings for 3 plugs goes through the power daemon's own history code
(``power_year.generate``) and its ``PowerService`` writes power.json from it (24 h series,
30 days of daily kWh); the other public files are the dashboard fixtures, five nodes in
nodes.json, and the real api daemon's host.json and pi.json. Then:

- in this process, ``Metrics.render()`` cold (every file parsed), steady (power.json
  rewritten before each render, as between two 15 s scrapes) and unchanged (the text reused
  within the second);
- the real api daemon (``edgepair pi run api``) over HTTP: ``GET /metrics`` latency, and
  its RSS before the first scrape and after them;
- RSS in two fresh interpreters that load what the api daemon loads (aiohttp.web, msgspec,
  the documents), then render the same samples twenty times: with prometheus-client, and
  with a 25-line hand-written text formatter. The difference is what the library costs.

    .venv/bin/python scripts/bench/metrics.py [--days 365] [--requests 200] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    Children,
    Target,
    emit_json,
    machine,
    machine_line,
    memory,
    run,
    summary,
    wait_http,
)
from power_common import PowerSite
from power_year import build_times, generate

from handshake.util.timeutil import iso
from pi.metrics.collector import Metrics
from tests.fixtures import dashboard as fixtures

TARGET_RENDER_MS = 5.0
# What prometheus-client may add before a hand-written exposition is worth its upkeep:
# a Pi 3B+ has 1 GB for every daemon and the api daemon's budget is 45 MB.
TARGET_LIBRARY_MB = 3.0
RENDERS = 200
QUICK = {"days": 30, "requests": 50}
NODES = 5

_CHILD = r"""
import json, sys, time
from pathlib import Path
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1000
sys.path.insert(0, sys.argv[3])
import aiohttp.web, msgspec
from handshake import documents
public = Path(sys.argv[2])
before = rss()
if sys.argv[1] == "library":
    from pi.metrics.collector import Metrics
    metrics = Metrics(public)
    for i in range(20):
        metrics._last = None
        text = metrics.render()
else:
    from handshake.documents import FILES
    samples = json.loads(Path(sys.argv[4]).read_text())
    def value(v):
        return "NaN" if v != v else repr(float(v))
    def escape(s):
        return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    def render():
        for kind, name in FILES.items():  # the same reads as the collector
            if (public / name).exists():
                documents.read_or_none(public / name, kind)
        lines = []
        for family in samples:
            lines.append(f"# HELP {family['name']} {escape(family['help'])}")
            lines.append(f"# TYPE {family['name']} {family['type']}")
            for name, labels, v in family["samples"]:
                inner = ",".join(f'{k}="{escape(x)}"' for k, x in labels.items())
                lines.append(f"{name}{{{inner}}} {value(v)}" if inner else f"{name} {value(v)}")
        return ("\n".join(lines) + "\n").encode()
    for i in range(20):
        text = render()
print(json.dumps({"before_mb": before, "after_mb": rss(), "bytes": len(text)}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    parser.add_argument("--requests", type=int, default=200,
                        help="GET /metrics to the daemon (default 200)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['days']} days, {QUICK['requests']} requests")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.requests = QUICK["days"], QUICK["requests"]
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    targets = [Target("render, steady (power.json changed), p95",
                      result["render_ms"]["steady"]["p95"], TARGET_RENDER_MS, "ms", strict=True),
               Target("GET /metrics from the daemon, p95", result["http_ms"]["p95"],
                      TARGET_RENDER_MS, "ms", strict=True),
               Target("RSS prometheus-client adds over a hand-written exposition",
                      result["rss"]["library_over_hand_mb"], TARGET_LIBRARY_MB, "MB")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    host = machine()
    site = PowerSite(3, timezone="UTC")
    children = Children()
    try:
        await site.start()
        site.database.parent.mkdir(parents=True, exist_ok=True)
        say(f"  generating {args.days} days × 3 plugs at 5 s …")
        made = await asyncio.to_thread(generate, site.database, 3, args.days, say)
        await build_times(site, made["end"])  # the power daemon writes power.json from it
        public = site.public_dir
        _freshen_power(public)
        fixtures.write(public, ("inbox", "control", "pihole", "usage"))
        _write_nodes(public)
        api_port = _api_port(site.config)
        log = site.root / "api.log"
        proc = children.spawn(["pi", "run", "api", "--config", str(site.config)], log)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{api_port}"
            await wait_http(session, url + "/api/v1/health", procs=(proc,), log=log)
            await asyncio.sleep(6)  # pi.json: written 5 s after start
            _freshen_power(public)
            rss_before = memory(proc.pid)
            say(f"  {args.requests} × GET /metrics …")
            http, size = await _scrapes(session, url + "/metrics", args.requests, public)
            rss_after = memory(proc.pid)
        children.stop(proc)
        say(f"  {RENDERS} renders in process …")
        renders = _renders(public)
        say("  RSS: prometheus-client against a hand-written exposition …")
        rss = _rss(public, site.root)
        files = {p.name: p.stat().st_size for p in sorted(public.glob("*.json"))}
    finally:
        children.stop_all()
        await site.stop()
        site.remove()
    return {"bench": "metrics",
            "config": {"plugs": 3, "days": args.days, "requests": args.requests,
                       "public_files_bytes": files, "metrics_bytes": size},
            "render_ms": renders, "http_ms": http,
            "daemon_rss": {"before_scrapes": rss_before, "after_scrapes": rss_after},
            "rss": rss, "machine": host}


def _freshen_power(public: Path) -> None:
    """power.json as written at the history's end, moved to now (it must be fresh to count)."""
    path = public / "power.json"
    doc = json.loads(path.read_text())
    doc["generated_at"] = iso(time.time())
    for plug in doc["plugs"]:
        plug["health"], plug["last_seen"] = "ok", iso(time.time())
    path.write_text(json.dumps(doc, separators=(",", ":")))


def _write_nodes(public: Path) -> None:
    now = iso(time.time())
    nodes = [{"hwid": f"esp32-{i:04x}", "name": f"node{i}", "role": "sensor",
              "state": "online" if i else "pending", "last_seen": now, "firmware": "0.1.0",
              "capabilities": ["temperature", "humidity"], "next_job": None,
              "readings": {"temperature": {"value": 20.0 + i, "unit": "°C", "at": now},
                           "humidity": {"value": 40 + i, "unit": "%", "at": now},
                           "door": {"value": bool(i % 2), "unit": None, "at": now}}}
             for i in range(NODES)]
    (public / "nodes.json").write_text(json.dumps(
        {"schema": "edgepair.nodes/1", "generated_at": now, "interval_s": 10, "nodes": nodes}))


def _api_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("listen = \"127.0.0.1:") and "[api]" in config.read_text():
            return int(line.split(":")[1].rstrip('"'))
    raise SystemExit("no api listen address in the config")


async def _scrapes(session: aiohttp.ClientSession, url: str, n: int,
                   public: Path) -> tuple[dict[str, float], int]:
    times, size = [], 0
    for i in range(n):
        if i % 10 == 0:
            _freshen_power(public)  # a new power.json now and then, as the power daemon does
        start = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
            assert response.status == 200, response.status
        times.append(time.perf_counter() - start)
        size = len(body)
        await asyncio.sleep(0.01)
    return summary(times, 1000, 3), size


def _renders(public: Path) -> dict[str, Any]:
    clock = [time.time()]
    cold, steady, unchanged = [], [], []
    for _ in range(20):
        start = time.perf_counter()
        Metrics(public, clock=lambda: clock[0]).render()
        cold.append(time.perf_counter() - start)
    metrics = Metrics(public, clock=lambda: clock[0])
    metrics.render()
    power = public / "power.json"
    data = power.read_bytes()
    for i in range(RENDERS):
        power.write_bytes(data + b" " * (i % 2 + 1))  # a new size and mtime: parsed again
        clock[0] += 1.1
        start = time.perf_counter()
        metrics.render()
        steady.append(time.perf_counter() - start)
        start = time.perf_counter()
        metrics.render()
        unchanged.append(time.perf_counter() - start)
    return {"cold": summary(cold, 1000, 3), "steady": summary(steady, 1000, 3),
            "unchanged": summary(unchanged, 1000, 4)}


def _rss(public: Path, root: Path) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    text = Metrics(public).render().decode()
    families = [{"name": f.name, "help": f.documentation, "type": f.type,
                 "samples": [[s.name, s.labels, s.value] for s in f.samples]}
                for f in text_string_to_metric_families(text)]
    samples = root / "samples.json"
    samples.write_text(json.dumps(families))
    repo = str(Path(__file__).resolve().parents[2])
    out = {}
    for mode in ("library", "hand"):
        done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(public), repo, str(samples)],
                              capture_output=True, text=True, check=True, timeout=120)
        out[mode] = json.loads(done.stdout)
    added = {m: round(v["after_mb"] - v["before_mb"], 1) for m, v in out.items()}
    return {"library_added_mb": added["library"], "hand_added_mb": added["hand"],
            "library_over_hand_mb": round(added["library"] - added["hand"], 1),
            "baseline_mb": round(out["library"]["before_mb"], 1),
            "samples": sum(len(f["samples"]) for f in families), "families": len(families)}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    c, rm, rss = r["config"], r["render_ms"], r["rss"]
    print(f"/metrics: 3 plugs, {c['days']} days of history, {rss['families']} families, "
          f"{rss['samples']} samples, {c['metrics_bytes']} bytes")
    for kind in ("cold", "steady", "unchanged"):
        s = rm[kind]
        print(f"  render {kind:9s} median {s['median']} ms, p95 {s['p95']} ms, max {s['max']} ms")
    h = r["http_ms"]
    print(f"  GET /metrics  median {h['median']} ms, p95 {h['p95']} ms, max {h['max']} ms "
          f"({c['requests']} requests)")
    d = r["daemon_rss"]
    print(f"  api daemon RSS {d['before_scrapes']['rss_mb']} MB before the scrapes, "
          f"{d['after_scrapes']['rss_mb']} MB after")
    print(f"  RSS over {rss['baseline_mb']} MB (aiohttp.web, msgspec, documents): "
          f"prometheus-client +{rss['library_added_mb']} MB, hand-written "
          f"+{rss['hand_added_mb']} MB")
    print(machine_line(r["machine"]))
    for t in targets:
        print("  " + t.line())


if __name__ == "__main__":
    sys.exit(main())
