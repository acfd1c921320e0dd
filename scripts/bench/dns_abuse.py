#!/usr/bin/env python3
"""Benchmark the builtin DNS responder under abuse: legitimate latency while attacked.

The responder runs in its own process pinned to one core (as in ``dns_qps.py``). A hostile
process then sends big multi-question UDP queries (~48 KB, thousands of questions) at
``--udp-rate`` per second from 127.0.0.1 and holds ``--tcp-conns`` TCP connections from
127.0.0.5, each sending one query every ``--tcp-every`` seconds (under the idle timeout)
and reconnecting when closed. Meanwhile this process asks the failover name over UDP at
``--rate`` per second and over a new TCP connection from 127.0.0.6 every
``1 / --tcp-rate`` seconds, and times each answer: first without the attack (baseline),
then under it. Packets go to 127.0.0.0/8 only, and every process stops by itself.

    .venv/bin/python scripts/bench/dns_abuse.py [--seconds 4] [--rate 200] [--udp-rate 10]
                                                [--tcp-conns 80] [--tcp-every 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import socket
import statistics
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dns_qps import NAME, SERVER_GRACE_S, START_TIMEOUT_S, _pick_cpus, query_wire, serve

HOSTILE_TCP_SOURCE = "127.0.0.5"
LEGIT_TCP_SOURCE = "127.0.0.6"
BIG_QUESTIONS = 8000  # 6 bytes each after the first (a compression pointer): ~48 KB
ANSWER_TIMEOUT_S = 1.0  # a legitimate query unanswered this long counts as lost
RAMP_S = 1.0  # the hostile process opens its connections before the attack is measured
TCP_ATTACK_QUERY = query_wire(0, NAME)
TARGET_P99_MS = 5.0  # the same latency target as dns_qps.py, for answers under attack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="measured time per phase (default 4)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="legitimate UDP queries per second (default 200)")
    parser.add_argument("--tcp-rate", type=float, default=20.0,
                        help="legitimate TCP connections per second (default 20)")
    parser.add_argument("--udp-rate", type=float, default=10.0,
                        help="hostile multi-question UDP packets per second (default 10)")
    parser.add_argument("--tcp-conns", type=int, default=80,
                        help="hostile TCP connections held (default 80)")
    parser.add_argument("--tcp-every", type=float, default=5.0,
                        help="hostile query interval per connection, s (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 60 or min(args.rate, args.tcp_rate) <= 0 or \
            args.udp_rate < 0 or args.tcp_conns < 0 or args.tcp_every <= 0:
        parser.error("--seconds in (0, 60], rates above 0 (attack rates at least 0)")

    server_cpu, client_cpu = _pick_cpus()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    lifetime = 2 * args.seconds + RAMP_S + SERVER_GRACE_S
    server = ctx.Process(target=serve, args=(child, server_cpu, lifetime), daemon=True)
    server.start()
    hostile: multiprocessing.process.BaseProcess | None = None
    try:
        if not parent.poll(START_TIMEOUT_S):
            raise SystemExit("the DNS responder did not start")
        port = parent.recv()
        baseline = asyncio.run(measure(port, args.seconds, args.rate, args.tcp_rate))
        h_parent, h_child = ctx.Pipe()
        hostile = ctx.Process(target=attack, daemon=True,
                              args=(h_child, port, args.udp_rate, args.tcp_conns,
                                    args.tcp_every, args.seconds + RAMP_S + SERVER_GRACE_S))
        hostile.start()
        if not h_parent.poll(START_TIMEOUT_S):
            raise SystemExit("the hostile client did not start")
        h_parent.recv()
        time.sleep(RAMP_S)
        attacked = asyncio.run(measure(port, args.seconds, args.rate, args.tcp_rate))
        h_parent.send("stop")
        hostile_figures = h_parent.recv() if h_parent.poll(START_TIMEOUT_S) else {}
        figures: dict[str, Any] = {}
        with contextlib.suppress(OSError, EOFError):
            parent.send("stop")
            if parent.poll(START_TIMEOUT_S):
                figures = parent.recv()
    finally:
        for proc in (hostile, server):
            if proc is None:
                continue
            proc.join(START_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
    result: dict[str, Any] = {
        "seconds": args.seconds, "rate": args.rate, "tcp_rate": args.tcp_rate,
        "udp_attack_rate": args.udp_rate, "tcp_attack_conns": args.tcp_conns,
        "tcp_attack_every_s": args.tcp_every, "server_cpu": server_cpu,
        "client_cpu": client_cpu, "baseline": baseline, "attacked": attacked,
        "hostile": hostile_figures, "server_queries": figures.get("queries"),
        "server_dropped": figures.get("dropped"), "server_cpu_s": figures.get("cpu_s"),
    }
    udp_p99 = attacked["udp"]["p99_ms"]
    result["targets"] = [
        {"name": "udp_p99_ms_attacked", "value": udp_p99, "limit": TARGET_P99_MS,
         "strict": True, "pass": udp_p99 is not None and udp_p99 < TARGET_P99_MS},
        {"name": "udp_lost_attacked", "value": attacked["udp"]["lost"], "limit": 0,
         "pass": attacked["udp"]["lost"] == 0},
        {"name": "tcp_failed_attacked", "value": attacked["tcp"]["failed"], "limit": 0,
         "pass": attacked["tcp"]["failed"] == 0},
    ]
    result["pass"] = all(t["pass"] for t in result["targets"])
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


async def measure(port: int, seconds: float, rate: float, tcp_rate: float) -> dict[str, Any]:
    """Legitimate UDP (paced) and TCP (a connection each) queries for ``seconds``."""
    udp, tcp = await asyncio.gather(_legit_udp(port, seconds, rate),
                                    _legit_tcp(port, seconds, tcp_rate))
    return {"udp": udp, "tcp": tcp}


async def _legit_udp(port: int, seconds: float, rate: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))

        async def receive() -> None:
            while True:
                data = await loop.sock_recv(sock, 4096)
                now = time.perf_counter()
                if len(data) >= 12:
                    then = sent_at.pop(struct.unpack_from("!H", data)[0], None)
                    if then is not None:
                        latencies.append(now - then)

        receiver = loop.create_task(receive())
        try:
            started = time.perf_counter()
            for qid in range(int(seconds * rate)):
                await asyncio.sleep(max(started + qid / rate - time.perf_counter(), 0))
                sent_at[qid & 0xFFFF] = time.perf_counter()
                with contextlib.suppress(BlockingIOError):
                    sock.send(query_wire(qid & 0xFFFF, NAME))
            await asyncio.sleep(ANSWER_TIMEOUT_S)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
    return _summary(latencies) | {"sent": int(seconds * rate), "lost": len(sent_at)}


async def _legit_tcp(port: int, seconds: float, rate: float) -> dict[str, Any]:
    latencies: list[float] = []
    failed = 0
    started = time.perf_counter()
    for n in range(int(seconds * rate)):
        await asyncio.sleep(max(started + n / rate - time.perf_counter(), 0))
        then = time.perf_counter()
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(LEGIT_TCP_SOURCE, 0))
                try:
                    writer.write(len(TCP_ATTACK_QUERY).to_bytes(2, "big") + TCP_ATTACK_QUERY)
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    await reader.readexactly(size)
                finally:
                    writer.close()
            latencies.append(time.perf_counter() - then)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            failed += 1
    return _summary(latencies) | {"sent": int(seconds * rate), "failed": failed}


def attack(conn: Connection, port: int, udp_rate: float, tcp_conns: int, tcp_every: float,
           lifetime_s: float) -> None:
    """The hostile process: big UDP queries and TCP connections held, until told to stop."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    asyncio.run(_attack(conn, port, udp_rate, tcp_conns, tcp_every, lifetime_s))


async def _attack(conn: Connection, port: int, udp_rate: float, tcp_conns: int,
                  tcp_every: float, lifetime_s: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    counts = {"udp_sent": 0, "tcp_connects": 0, "tcp_closed_by_server": 0, "tcp_open": 0}
    tasks = [loop.create_task(_hostile_tcp(port, tcp_every, counts)) for _ in range(tcp_conns)]
    if udp_rate > 0:
        tasks.append(loop.create_task(_hostile_udp(port, udp_rate, counts)))
    conn.send("ready")
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), lifetime_s)
    finally:
        loop.remove_reader(conn.fileno())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(OSError):
        conn.send(counts)


async def _hostile_udp(port: int, rate: float, counts: dict[str, int]) -> None:
    packet = big_query()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        started = time.perf_counter()
        n = 0
        while True:
            await asyncio.sleep(max(started + n / rate - time.perf_counter(), 0))
            with contextlib.suppress(OSError):  # an ICMP error or a full buffer
                sock.send(packet)
                counts["udp_sent"] += 1
            n += 1


async def _hostile_tcp(port: int, every_s: float, counts: dict[str, int]) -> None:
    """One slot held: a query every ``every_s`` (under the idle timeout), reconnecting."""
    wire = len(TCP_ATTACK_QUERY).to_bytes(2, "big") + TCP_ATTACK_QUERY
    while True:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(HOSTILE_TCP_SOURCE, 0))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        counts["tcp_connects"] += 1
        counts["tcp_open"] += 1
        try:
            while True:
                writer.write(wire)
                size = int.from_bytes(await reader.readexactly(2), "big")
                await reader.readexactly(size)
                await asyncio.sleep(every_s)
        except (OSError, asyncio.IncompleteReadError):
            counts["tcp_closed_by_server"] += 1
        finally:
            counts["tcp_open"] -= 1
            writer.close()
        await asyncio.sleep(0.1)  # then take the slot again


def big_query(questions: int = BIG_QUESTIONS) -> bytes:
    """One query with ``questions`` questions: the name once, then compression pointers."""
    first = query_wire(0x4242, NAME)
    header = struct.pack("!HHHHHH", 0x4242, 0x0100, questions, 0, 0, 0)
    return header + first[12:] + (b"\xc0\x0c" + struct.pack("!HH", 1, 1)) * (questions - 1)


def _summary(latencies: list[float]) -> dict[str, Any]:
    if len(latencies) < 2:
        return {"answers": len(latencies), "p50_ms": None, "p99_ms": None, "max_ms": None}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"answers": len(latencies), "p50_ms": round(cuts[49] * 1000, 3),
            "p99_ms": round(cuts[98] * 1000, 3), "max_ms": round(max(latencies) * 1000, 3)}


def _ms(value: float | None) -> str:
    return "   -   " if value is None else f"{value:7.3f}"


def _print(r: dict[str, Any]) -> None:
    print(f"builtin DNS responder under abuse, 127.0.0.1: {r['seconds']:g} s per phase; "
          f"server on CPU {r['server_cpu']}, client on CPU {r['client_cpu']}")
    print(f"  attack: {r['udp_attack_rate']:g}/s UDP queries of {len(big_query())} B "
          f"({BIG_QUESTIONS} questions) + {r['tcp_attack_conns']} TCP connections from "
          f"{HOSTILE_TCP_SOURCE}, a query each every {r['tcp_attack_every_s']:g} s")
    for phase in ("baseline", "attacked"):
        u, t = r[phase]["udp"], r[phase]["tcp"]
        print(f"  {phase:9} UDP p50 {_ms(u['p50_ms'])} ms  p99 {_ms(u['p99_ms'])} ms  "
              f"max {_ms(u['max_ms'])} ms  lost {u['lost']}/{u['sent']}")
        print(f"  {'':9} TCP p50 {_ms(t['p50_ms'])} ms  p99 {_ms(t['p99_ms'])} ms  "
              f"max {_ms(t['max_ms'])} ms  failed {t['failed']}/{t['sent']}")
    h = r["hostile"]
    print(f"  hostile   {h.get('udp_sent')} UDP sent; TCP {h.get('tcp_connects')} connects, "
          f"{h.get('tcp_closed_by_server')} closed by the server, {h.get('tcp_open')} open "
          f"at the end")
    print(f"  server    saw {r['server_queries']}, dropped {r['server_dropped']}, "
          f"CPU {r['server_cpu_s']:.2f} s")
    for t in r["targets"]:
        print(f"  target    {t['name']} {t['value']} {'<' if t.get('strict') else '≤'} "
              f"{t['limit']:g}: {'PASS' if t['pass'] else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
