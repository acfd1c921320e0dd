#!/usr/bin/env python3
"""Benchmark notifications: a public file's change → the webhook delivered, through the real
api daemon, and how soon a message waiting for a dead receiver arrives once it is back.

The real api daemon (``edgepair pi run api``) runs with one ``[[notify]]`` webhook target
(``debounce_s = 0``: the pipeline alone; a real site waits its debounce on top) pointing
at an aiohttp receiver on 127.0.0.1. The benchmark plays the control daemon: it rewrites
control.json atomically, alternating the safe state and following the plan, and times each
rename until the receiver has the ``safe_state`` / ``safe_state_left`` POST. Then the
receiver goes away for ``--down`` seconds while the safe state is entered, and the benchmark
times its return → the message delivered (retries with capped exponential backoff).

    .venv/bin/python scripts/bench/notify.py [--trials 40] [--down 6] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from _common import (
    BenchSite,
    Children,
    Target,
    emit_json,
    free_port,
    machine,
    machine_line,
    memory,
    run,
    summary,
    wait_http,
)
from aiohttp import web

from handshake import documents
from handshake.documents import ControlDocument
from handshake.util.timeutil import iso

TARGET_P95_MS = 500.0
# After the receiver is back, the message arrives within one backoff step (capped).
TARGET_RECOVERY_S = 30.0
RETRY_MAX_S = 8
QUICK = {"trials": 10, "down": 3.0}
DELIVERY_TIMEOUT_S = 30.0


class Receiver:
    """The webhook: records when each event arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrived.append((time.perf_counter(), body))
        self.changed.set()
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def next(self, event: str) -> float:
        """When the next ``event`` arrived (perf_counter)."""
        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
            while True:
                for at, body in self.arrived:
                    if body["event"] == event:
                        self.arrived.clear()
                        return at
                self.changed.clear()
                await self.changed.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40,
                        help="safe state entered and left, each timed (default 40)")
    parser.add_argument("--down", type=float, default=6.0,
                        help="seconds the receiver is away (default 6)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['trials']} trials, receiver down {QUICK['down']:g} s")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.down = QUICK["trials"], QUICK["down"]
    return run(lambda: _main(args))


async def _main(args: argparse.Namespace) -> int:
    result = await bench(args)
    targets = [Target("file change → webhook delivered, p95", result["delivered_ms"]["p95"],
                      TARGET_P95_MS, "ms"),
               Target("receiver back → waiting message delivered", result["recovery_s"],
                      TARGET_RECOVERY_S, "s")]
    if args.json:
        emit_json(result, targets)
    else:
        _print(result, targets)
    return 0 if all(t.passed for t in targets) else 1


def _control(site: BenchSite, safe: bool) -> float:
    """control.json rewritten (atomic rename) as the control daemon would; when it landed."""
    now = time.time()
    document = ControlDocument(generated_at=iso(now) or "", interval_s=5,
                               mode="safe" if safe else "following",
                               reason="plan_expired" if safe else "following")
    documents.publish(site.public_dir / "control.json", document)
    return time.perf_counter()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: None) if args.json else (lambda text: print(text, file=sys.stderr))
    host = machine()
    site = BenchSite(interval=1.0, timeout=0.5)
    receiver = Receiver()
    children = Children()
    with site.pi_config.open("a") as config:
        config.write(f'[[notify]]\ntype = "webhook"\nurl = "http://127.0.0.1:{receiver.port}/hook"\n'
                     f'events = ["safe_state", "safe_state_left"]\n'
                     f'[notify_options]\ndebounce_s = 0\nretry_max_s = {RETRY_MAX_S}\n')
    try:
        await receiver.start()
        _control(site, safe=False)
        log = site.root / "pi.log"
        proc = children.spawn(site.pi_command(), log)
        import aiohttp  # noqa: PLC0415 - only for the readiness probe

        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/api/v1/health", procs=(proc,), log=log)
        await asyncio.sleep(0.5)  # the notifier's first read
        say(f"  {args.trials} × safe state entered and left …")
        delays = []
        for _ in range(args.trials):
            for safe, event in ((True, "safe_state"), (False, "safe_state_left")):
                written = _control(site, safe)
                delays.append(await receiver.next(event) - written)
                await asyncio.sleep(0.05)
        rss = memory(proc.pid)
        say(f"  receiver away {args.down:g} s …")
        await receiver.stop()
        _control(site, safe=True)
        await asyncio.sleep(args.down)
        await receiver.start()
        back = time.perf_counter()
        recovery = await receiver.next("safe_state") - back
        children.stop(proc)
    finally:
        children.stop_all()
        await receiver.stop()
        site.remove()
    return {"bench": "notify", "config": {"trials": args.trials, "down_s": args.down,
                                          "debounce_s": 0, "retry_max_s": RETRY_MAX_S},
            "delivered_ms": summary(delays, 1000, 2), "recovery_s": round(recovery, 2),
            "daemon_rss": rss, "machine": host}


def _print(r: dict[str, Any], targets: list[Target]) -> None:
    d = r["delivered_ms"]
    print(f"notify: control.json rewritten → webhook delivered ({d['n']} events): median "
          f"{d['median']} ms, p95 {d['p95']} ms, max {d['max']} ms")
    print(f"  receiver away {r['config']['down_s']:g} s: delivered {r['recovery_s']} s after it "
          f"came back (retry_max_s {r['config']['retry_max_s']})")
    print(f"  api daemon RSS {r['daemon_rss']['rss_mb']} MB with the notifier")
    print(machine_line(r["machine"]))
    for t in targets:
        print("  " + t.line())


if __name__ == "__main__":
    sys.exit(main())
