#!/usr/bin/env python3
"""Benchmark the builtin DNS responder: queries/s and latency over loopback UDP.

The responder runs in its own process pinned to one core; this process keeps a small
window of queries outstanding for a few seconds and times each answer. Packets go to
127.0.0.1 only, and both processes stop by themselves.

    .venv/bin/python scripts/bench/dns_qps.py [--seconds 3] [--window 8] [--rate 3000]
                                              [--miss] [--json]

``--miss`` asks a new name every time (NXDOMAIN), so every answer is built by dnspython
instead of coming from the responder's wire cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode

NAME = "nas.home.arpa"
ADDRESS = "192.168.1.10"
TTL_S = 5
WARMUP_S = 0.3  # first answers fill the cache and warm the interpreter: not measured
LOSS_TIMEOUT_S = 0.5  # a window with no answer this long is counted lost and sent again
SERVER_GRACE_S = 10.0  # the server exits by itself this long after the run should be over
START_TIMEOUT_S = 10.0  # spawning a Python process and importing dnspython, on a slow Pi
TARGET_QPS = 3000  # the design's floor for one core
TARGET_P99_MS = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time (default 3)")
    parser.add_argument("--window", type=int, default=8,
                        help="queries outstanding at once (default 8)")
    parser.add_argument("--rate", type=float, default=None,
                        help="pace queries at this many per second (default: as fast as "
                             "answers come back)")
    parser.add_argument("--miss", action="store_true",
                        help="a new name per query: measure the uncached path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 60 or not 1 <= args.window <= 256 or (args.rate or 1) <= 0:
        parser.error("--seconds must be in (0, 60], --window in [1, 256], --rate above 0")

    server_cpu, client_cpu = _pick_cpus()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    lifetime = WARMUP_S + args.seconds + SERVER_GRACE_S
    proc = ctx.Process(target=serve, args=(child, server_cpu, lifetime), daemon=True)
    proc.start()
    try:
        if not parent.poll(START_TIMEOUT_S):
            raise SystemExit("the DNS responder did not start")
        port = parent.recv()
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        result = blast(port, args.seconds, args.window, miss=args.miss, rate=args.rate)
        server: dict[str, Any] = {}
        with contextlib.suppress(OSError, EOFError):  # a dead server has no figures to give
            parent.send("stop")
            if parent.poll(START_TIMEOUT_S):
                server = parent.recv()
    finally:
        proc.join(START_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join()
    queries, cpu_s = server.get("queries"), server.get("cpu_s")
    result |= {"server_cpu": server_cpu, "client_cpu": client_cpu, "server_queries": queries,
               "server_dropped": server.get("dropped"),
               "server_us_per_query": round(cpu_s / queries * 1e6, 1) if queries and cpu_s else None}
    result["targets"] = [
        {"name": "queries/s", "value": result["qps"], "limit": TARGET_QPS, "at_least": True,
         "pass": result["qps"] >= TARGET_QPS},
        {"name": "p99_ms", "value": result["p99_ms"], "limit": TARGET_P99_MS, "strict": True,
         "pass": result["p99_ms"] < TARGET_P99_MS},
    ]
    result["pass"] = all(t["pass"] for t in result["targets"])
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


def serve(conn: Connection, cpu: int | None, lifetime_s: float) -> None:
    """The responder process: pinned, answering until told to stop or its lifetime ends."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a checkout without install
    asyncio.run(_serve(conn, lifetime_s))


async def _serve(conn: Connection, lifetime_s: float) -> None:
    from pi.dns.builtin import BuiltinDns  # noqa: PLC0415 - after the sys.path tweak

    server = BuiltinDns(NAME, TTL_S, "127.0.0.1", 0)
    await server.start()
    await server.set_address(ADDRESS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), stop.set)  # "stop", or EOF when the parent died
    conn.send(server.port)
    cpu_started = time.process_time()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), lifetime_s)
    finally:
        loop.remove_reader(conn.fileno())
        await server.close()
    with contextlib.suppress(OSError):  # the parent may be gone
        conn.send({"queries": server.queries, "dropped": server.dropped,
                   "cpu_s": time.process_time() - cpu_started})


def blast(port: int, seconds: float, window: int, *, miss: bool,
          rate: float | None = None) -> dict[str, Any]:
    """Keep up to ``window`` queries outstanding (paced at ``rate``/s if given); time answers."""
    sent_at = [0.0] * 65536
    latencies: list[float] = []
    lost = 0
    next_id = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(LOSS_TIMEOUT_S)
        _check_first_answer(sock, miss)

        def send() -> None:
            nonlocal next_id
            qid = next_id
            next_id = (next_id + 1) & 0xFFFF
            name = f"q{qid:x}-{time.perf_counter_ns() & 0xFFFFFF:x}.home.arpa" if miss else NAME
            sent_at[qid] = time.perf_counter()
            sock.send(query_wire(qid, name))

        started = time.perf_counter()
        measure_from = started + WARMUP_S
        end = measure_from + seconds
        interval = 1 / rate if rate else 0.0
        due = started
        outstanding = 0
        last_answer = started
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if outstanding < window and now >= due:
                send()
                outstanding += 1
                due = due + interval if rate else now
                continue
            if now - last_answer > LOSS_TIMEOUT_S:
                lost, outstanding, last_answer = lost + outstanding, 0, now
                continue
            if rate:  # paced: wake for the next send even when no answer comes
                sock.settimeout(max(min(due - now, LOSS_TIMEOUT_S), 0.0001)
                                if outstanding < window else LOSS_TIMEOUT_S)
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            now = time.perf_counter()
            if len(data) < 12:
                continue
            outstanding -= 1
            last_answer = now
            then = sent_at[struct.unpack_from("!H", data)[0]]
            if then >= measure_from:
                latencies.append(now - then)
    if not latencies:
        raise SystemExit("no answers measured")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"mode": "miss" if miss else "hit", "seconds": seconds, "window": window,
            "rate": rate, "answers": len(latencies), "qps": round(len(latencies) / seconds),
            "p50_ms": round(cuts[49] * 1000, 3), "p99_ms": round(cuts[98] * 1000, 3),
            "max_ms": round(max(latencies) * 1000, 3), "lost": lost}


def query_wire(qid: int, name: str, qtype: int = 1) -> bytes:
    """A standard query for ``name`` (RD set, no EDNS), built by hand to keep the client fast."""
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + \
        struct.pack("!HH", qtype, 1)


def _check_first_answer(sock: socket.socket, miss: bool) -> None:
    """Make sure the responder answers what it should before measuring it."""
    sock.send(query_wire(0xFFFF, "check.home.arpa" if miss else NAME))
    try:
        response = dns.message.from_wire(sock.recv(4096))
    except TimeoutError:
        raise SystemExit("the DNS responder does not answer") from None
    if miss:
        ok = response.rcode() == dns.rcode.NXDOMAIN
    else:
        ok = [rd.to_text() for rrset in response.answer for rd in rrset] == [ADDRESS]
    if not ok:
        raise SystemExit(f"unexpected answer:\n{response}")


def _pick_cpus() -> tuple[int | None, int | None]:
    """The server gets a core of its own; the client another one when there is one."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1], (cpus[0] if len(cpus) > 1 else None)


def _print(r: dict[str, Any]) -> None:
    what = "new name per query (uncached)" if r["mode"] == "miss" else f"A {NAME} (cached)"
    pace = f"paced at {r['rate']:g}/s" if r["rate"] else "flat out"
    print(f"builtin DNS responder, UDP on 127.0.0.1: {what}, window {r['window']}, {pace}, "
          f"{r['seconds']:g} s")
    print(f"  server on CPU {r['server_cpu']}, client on CPU {r['client_cpu']}")
    print(f"  queries/s  {r['qps']}")
    print(f"  latency    p50 {r['p50_ms']:.3f} ms   p99 {r['p99_ms']:.3f} ms   "
          f"max {r['max_ms']:.3f} ms")
    print(f"  server     {r['server_us_per_query']} µs CPU per query; saw {r['server_queries']}, "
          f"dropped {r['server_dropped']}; lost {r['lost']}")
    for t in r["targets"]:
        sign = "≥" if t.get("at_least") else "<"
        print(f"  target     {t['name']} {t['value']:g} {sign} {t['limit']:g}: "
              f"{'PASS' if t['pass'] else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
