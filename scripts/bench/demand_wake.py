#!/usr/bin/env python3
"""Benchmark wake on demand: a DNS query for the sleeping host's name → the host answering.

The real Pi api daemon and the real host agent run as processes on loopback. The host
"sleeps" frozen (SIGSTOP: its port stays, heartbeats time out, like a suspended machine
whose NIC listens for its magic packet); a UDP listener on 127.0.0.1 is its NIC and
"boots" it (SIGCONT) ``--boot-s`` after the packet. Each trial: the host announces
going-offline and freezes, the Pi marks it offline, a client at 127.0.0.5 asks for the
name, and the clock runs until the name answers the host's address again.

Then the cost of the listener: two api daemons side by side, one without
``[wake_on_demand]`` and one with the DNS trigger and two ports, both answering the same
stream of queries for the name (a denied client, so nobody is woken); RSS and CPU seconds.

    .venv/bin/python scripts/bench/demand_wake.py [--trials 5] [--boot-s 2] [--qps 200]
                                                  [--quick] [--json]

Every packet goes to 127.0.0.0/8; all daemons are stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
from _common import (
    HOST_ADDRESS,
    MAC,
    PI_ADDRESS,
    BenchSite,
    Children,
    Target,
    emit_json,
    free_port,
    machine,
    machine_line,
    memory,
    pi_status,
    resolve,
    run,
    summary,
    wait_for,
    wait_http,
)

from host import config as host_config
from host.notify import notify

INTERVAL_S = 0.5
TIMEOUT_S = 0.25
CLIENT = "127.0.0.5"  # an allowed client
DENIED = "127.0.0.66"  # for the cost run: every query checked, none wakes
TARGET_MARGIN_S = 2.0  # the issue: first query → host answering ≤ boot time + 2 s
TARGET_RSS_MB = 3.0
LOAD_S = 10.0
QUICK_TRIALS = 3


def demand_section(*ports: int) -> str:
    listed = ", ".join(map(str, ports))
    return f"""
[wake_on_demand]
dns = true
clients = ["127.0.0.0/8"]
deny = ["{DENIED}/32"]
min_interval_s = 0
http_ports = [{listed}]
"""


class Nic(asyncio.DatagramProtocol):
    """The sleeping host's NIC: a magic packet for its MAC boots it after ``boot_s``."""

    def __init__(self, boot: Host) -> None:
        self.magic = bytes.fromhex("ff" * 6 + MAC.replace(":", "") * 16)
        self.host = boot
        self.first_packet: float | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data == self.magic and self.first_packet is None:
            self.first_packet = time.monotonic()
            asyncio.get_running_loop().call_later(self.host.boot_s, self.host.resume)


class Host:
    def __init__(self, pid: int, boot_s: float) -> None:
        self.pid = pid
        self.boot_s = boot_s

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def trials(args: argparse.Namespace, children: Children) -> dict[str, object]:
    site = BenchSite(interval=INTERVAL_S, timeout=TIMEOUT_S)
    site.pi_config.write_text(site.pi_config.read_text() + demand_section(free_port()))
    try:
        pi = children.spawn(site.pi_command(), site.root / "pi.log")
        agent = children.spawn(site.host_command(), site.root / "host.log")
        host = Host(agent.pid, args.boot_s)
        config = host_config.load(site.host_config)
        loop = asyncio.get_running_loop()
        nic = Nic(host)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: nic, local_addr=("127.0.0.1", site.wol_port))
        took: list[float] = []
        packet: list[float] = []
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/api/v1/health", (pi,), site.root / "pi.log")

            async def state(name: str) -> bool:
                return (await pi_status(session, site.api))["state"] == name

            async def host_answers() -> bool:
                return await resolve(site.dns_port) == HOST_ADDRESS

            for _ in range(args.trials):
                await wait_for("host online", lambda: state("online"), procs=(pi, agent))
                await notify(config, "going-offline", reason="suspend")
                host.freeze()
                await wait_for("host offline", lambda: state("offline"), procs=(pi,))
                assert await resolve(site.dns_port) == PI_ADDRESS
                nic.first_packet = None
                start = time.monotonic()
                query = dns.message.make_query("nas.home.arpa", "A")
                await dns.asyncquery.udp(query, "127.0.0.1", port=site.dns_port,
                                         source=CLIENT, timeout=1)
                took.append(await wait_for("host answering", host_answers, every=0.005,
                                           timeout=args.boot_s + 20, procs=(pi,)))
                if nic.first_packet is not None:
                    packet.append(nic.first_packet - start)
        transport.close()
        return {"first_query_to_host_s": summary(took), "first_query_to_packet_ms":
                summary(packet, scale=1000, digits=1), "boot_s": args.boot_s}
    finally:
        children.stop_all()
        site.remove()


async def flood(port: int, source: str, qps: int, seconds: float) -> int:
    """Queries for the name at ``qps`` from ``source`` for ``seconds``; how many were answered."""
    answered = 0
    end = time.monotonic() + seconds
    query = dns.message.make_query("nas.home.arpa", "A")
    while time.monotonic() < end:
        tick = time.monotonic()
        batch = [dns.asyncquery.udp(query, "127.0.0.1", port=port, source=source, timeout=1)
                 for _ in range(max(1, qps // 20))]
        for result in await asyncio.gather(*batch, return_exceptions=True):
            answered += not isinstance(result, BaseException)
        await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
    return answered


async def cost(args: argparse.Namespace, children: Children) -> dict[str, object]:
    """RSS and CPU of an api daemon with and without the demand listener, same load."""
    results: dict[str, object] = {}
    sites = {"without": BenchSite(interval=INTERVAL_S, timeout=TIMEOUT_S),
             "with": BenchSite(interval=INTERVAL_S, timeout=TIMEOUT_S)}
    sites["with"].pi_config.write_text(sites["with"].pi_config.read_text()
                                       + demand_section(free_port(), free_port()))
    try:
        procs = {name: children.spawn(site.pi_command(), site.root / "pi.log")
                 for name, site in sites.items()}
        async with aiohttp.ClientSession() as session:
            for name, site in sites.items():
                await wait_http(session, site.api + "/api/v1/health", (procs[name],))
        await asyncio.sleep(2.0)  # settle: the first pi.json and host.json are written
        for name, site in sites.items():
            pid = procs[name].pid
            before = cpu_s(pid)
            answered = await flood(site.dns_port, DENIED, args.qps, args.load_s)
            results[name] = {**memory(pid), "cpu_s": round(cpu_s(pid) - before, 2),
                             "queries_answered": answered}
    finally:
        children.stop_all()
        for site in sites.values():
            site.remove()
    return results


async def main_async(args: argparse.Namespace) -> int:
    children = Children()
    document: dict[str, object] = {"benchmark": "demand_wake", "machine": machine()}
    document["wake"] = await trials(args, children)
    document["cost"] = cost_doc = await cost(args, children)
    wake = document["wake"]
    assert isinstance(wake, dict)
    assert isinstance(cost_doc, dict)
    added_rss = round(cost_doc["with"]["rss_mb"] - cost_doc["without"]["rss_mb"], 1)
    added_cpu = round(cost_doc["with"]["cpu_s"] - cost_doc["without"]["cpu_s"], 2)
    document["added"] = {"rss_mb": added_rss, "cpu_s": added_cpu,
                         "cpu_s_per_1000_queries": round(
                             1000 * added_cpu / max(1, cost_doc["with"]["queries_answered"]), 3)}
    targets = [Target("first query → host answering, max", wake["first_query_to_host_s"]["max"],
                      args.boot_s + TARGET_MARGIN_S, "s"),
               Target("RSS added by the demand listener", added_rss, TARGET_RSS_MB, "MB")]
    if args.json:
        emit_json(document, targets)
    else:
        first = wake["first_query_to_host_s"]
        print("wake on demand (real api daemon and host agent on loopback)")
        print(machine_line(document["machine"]))  # type: ignore[arg-type]
        print(f"  first query → host answering  median {first['median']:.2f} s, max "
              f"{first['max']:.2f} s over {first['n']} trials (simulated boot {args.boot_s:g} s)")
        print(f"  first query → magic packet    median "
              f"{wake['first_query_to_packet_ms']['median']:.1f} ms")
        for name in ("without", "with"):
            c = cost_doc[name]
            print(f"  api daemon {name:7s} demand   RSS {c['rss_mb']:.1f} MB, CPU {c['cpu_s']:.2f} s "
                  f"for {c['queries_answered']} queries in {args.load_s:g} s")
        print(f"  added by the listener         RSS {added_rss:+.1f} MB, CPU {added_cpu:+.2f} s")
        for t in targets:
            print(f"  {t.line()}")
    return 0 if all(t.passed for t in targets) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--boot-s", type=float, default=2.0, help="simulated boot time")
    parser.add_argument("--qps", type=int, default=200, help="query rate of the cost run")
    parser.add_argument("--load-s", type=float, default=LOAD_S)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRIALS} trials, 5 s load")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.load_s = QUICK_TRIALS, 5.0
    return run(lambda: main_async(args))


if __name__ == "__main__":
    sys.exit(main())
