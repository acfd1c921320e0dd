#!/usr/bin/env python3
"""A simulated week of a household through the real pure decision functions, on a virtual clock.

Nothing here reimplements a rule: the host's idle decision (``host.idle.decide``), the Pi's
host state machine (``pi.state.step``), wake on demand (``pi.demand.policy.decide``), the
inbox's wake rule (``pi.inbox.status.wake_due``) and the planner-lapse rule
(``pi.replan.replan_due``) run as they run in the daemons; only the world around them is
simulated, in 5 s steps (the heartbeat interval):

- evening SMB use (weekdays 19:00-21:30, weekends 10:00-12:00 and 20:00-22:30) by a laptop
  that resolves the name first (a demand) and again every 10 minutes, with files open;
- a 03:00 backup timer (``wake_timers``) whose ``borg`` runs 40 minutes;
- the planner's daily 14:15 run (its timer), and on every resume the re-plan missed while
  asleep (edgepair-host-replan.timer is Persistent), which renews the plan;
- inbox drops at 08:10 and 16:40, delivered at the next wake or after ``wake_max_age_s``;
- a TV that resolves the name every 5 minutes all day and night, denied;
- quiet hours 01:00-06:00.

It prints hours up, wakes by reason, missed demands (a person's demand not served within
the boot time + 2 s), timers missed, and kWh against an always-on host.

    .venv/bin/python scripts/bench/sleep_week.py [--days 7] [--boot-s 45] [--json]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import Target, emit_json

from handshake.messages import wake_reason
from handshake.util.schema import decode
from host.idle.checks import CheckResult
from host.idle.config import IdleConfig
from host.idle.decide import History, decide, suspended
from host.idle.wakes import NextWake
from pi import state as sm
from pi.demand.config import DemandConfig
from pi.demand.policy import Context, Demand
from pi.demand.policy import decide as demand_decide
from pi.inbox.config import InboxConfig
from pi.inbox.status import Pending, wake_due
from pi.replan import replan_due

STEP_S = 5.0  # the Pi's heartbeat interval
# Draw of the host: up (idle NAS, disks spinning), suspended (S3, NIC armed), booting.
UP_W, ASLEEP_W, BOOT_W = 40.0, 1.5, 55.0
START = datetime(2026, 12, 7, tzinfo=UTC)  # a Monday
LAPTOP, TV, PI, HOST = "192.168.1.20", "192.168.1.50", "192.168.1.2", "192.168.1.10"
BACKUP_AT, BACKUP_S = (3, 0), 40 * 60
PLANNER_AT, PLANNER_S = (14, 15), 120
INBOX_DROPS = ((8, 10), (16, 40))
UPLOAD_S = 60.0
# A plan covers the hours with known prices: before the day-ahead prices are out (14:15)
# the rest of today, after it tomorrow too.
REPLAN_EVERY_S = 2 * 3600.0
TV_EVERY_S = 300.0
LAPTOP_EVERY_S = 600.0
TARGETS = {"up_share": 0.25, "saved_share": 0.70}
FILE = Path("sleep-week.toml")


def sessions(day: datetime) -> list[tuple[datetime, datetime]]:
    """The household's SMB sessions on ``day``: when a person wants the NAS."""
    def at(h: int, m: int) -> datetime:
        return day.replace(hour=h, minute=m)

    if day.weekday() < 5:
        return [(at(19, 0), at(21, 30))]
    return [(at(10, 0), at(12, 0)), (at(20, 0), at(22, 30))]


@dataclass
class World:
    """The simulated host, the Pi's view of it, and what was measured."""

    boot_s: float
    status: sm.HostStatus
    host: str = "asleep"  # asleep | booting | up
    boot_done: float = 0.0
    idle: History = field(default_factory=History)
    next_check: float = 0.0
    wake_at_sent: float | None = None
    jobs: dict[str, float] = field(default_factory=dict)  # busy job → until
    pending_since: float | None = None  # oldest inbox file waiting on the Pi
    plan_valid_until: float | None = None
    last_plan_run: float = 0.0
    last_plan_wake: float | None = None
    last_inbox_wake: float | None = None
    last_demand_wake: float | None = None
    seconds: Counter[str] = field(default_factory=Counter)
    wakes: Counter[str] = field(default_factory=Counter)
    wakes_by_client: Counter[str] = field(default_factory=Counter)
    demands: list[tuple[float, bool]] = field(default_factory=list)  # (at, served)
    waiting: list[float] = field(default_factory=list)  # a person's demands not yet served
    timers_missed: int = 0
    energy_wh: float = 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--boot-s", type=float, default=45.0, help="resume + boot time")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    idle = decode(IdleConfig, {"enabled": True, "smb": True, "processes": ["borg"],
                               "wake_timers": ["backup.timer"]}, FILE)
    demand = decode(DemandConfig, {"dns": True, "deny": [f"{TV}/32"],
                                   "quiet_hours": "01:00-06:00"}, FILE)
    inbox = decode(InboxConfig, {"dir": "/srv/inbox", "wake_max_age_s": 6 * 3600}, FILE)
    rules = sm.Rules(fall=3, rise=2, boot_timeout_s=180, going_offline_grace_s=120)
    # Midnight on Monday: the host is up (the evening's last use just ended), a plan from
    # yesterday's run is in force.
    world = World(args.boot_s, sm.HostStatus(sm.HostState.ONLINE, START.timestamp()),
                  host="up")
    world.plan_valid_until = (START + timedelta(days=1)).timestamp()
    end = START + timedelta(days=args.days)
    t = START.timestamp()
    events = schedule(START, end)
    while t < end.timestamp():
        now = datetime.fromtimestamp(t, UTC)
        for kind, who in events.pop(round(t), ()):
            happen(world, kind, who, t, demand, rules)
        step_host(world, t, now, idle, rules)
        step_pi(world, t, inbox, rules)
        account(world)
        t += STEP_S
    return report(world, args, demand)


def schedule(start: datetime, end: datetime) -> dict[int, list[tuple[str, str]]]:
    """Every scheduled thing in the week, by the 5 s step it falls on."""
    events: dict[int, list[tuple[str, str]]] = {}

    def add(at: datetime | float, kind: str, who: str = "") -> None:
        stamp = at.timestamp() if isinstance(at, datetime) else at
        key = round(stamp / STEP_S) * round(STEP_S)
        events.setdefault(key, []).append((kind, who))

    day = start
    while day < end:
        for begin, finish in sessions(day):
            t = begin.timestamp()
            while t < finish.timestamp():
                add(t, "query", LAPTOP)
                t += LAPTOP_EVERY_S
            add(begin, "session-start")
            add(finish, "session-end")
        add(day.replace(hour=BACKUP_AT[0], minute=BACKUP_AT[1]), "timer", "backup")
        add(day.replace(hour=PLANNER_AT[0], minute=PLANNER_AT[1]), "timer", "planner")
        for h, m in INBOX_DROPS:
            add(day.replace(hour=h, minute=m), "drop")
        day += timedelta(days=1)
    t = start.timestamp() + 17.0
    while t < end.timestamp():
        add(t, "query", TV)
        t += TV_EVERY_S
    return events


def happen(world: World, kind: str, who: str, t: float, demand: DemandConfig,
           rules: sm.Rules) -> None:
    if kind == "query":
        verdict = demand_decide(Demand(who, "dns"), t, Context(
            world.status.state.value, world.last_demand_wake, frozenset({PI, HOST}), UTC),
            demand)
        if who == LAPTOP and world.host != "up" and verdict.why not in ("quiet",):
            world.waiting.append(t)
        if verdict.wake:
            world.last_demand_wake = t
            pi_event(world, sm.WakeRequested("demand:dns", who), t, rules)
    elif kind == "session-start":
        world.jobs["smb"] = float("inf")  # files open until the session ends
    elif kind == "session-end":
        world.jobs.pop("smb", None)
    elif kind == "timer":
        if world.host != "up":
            world.timers_missed += 1  # Persistent=true would run it late, at the next boot
        elif who == "backup":
            world.jobs["borg"] = t + BACKUP_S
        else:
            run_planner(world, t)
    elif kind == "drop" and world.pending_since is None:
        world.pending_since = t


def run_planner(world: World, t: float) -> None:
    world.jobs["planner"] = t + PLANNER_S
    now = datetime.fromtimestamp(t, UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    days = 2 if (now.hour, now.minute) >= PLANNER_AT else 1
    world.plan_valid_until = (midnight + timedelta(days=days)).timestamp()
    world.last_plan_run = t


def step_host(world: World, t: float, now: datetime, idle: IdleConfig, rules: sm.Rules) -> None:
    if world.host == "booting" and t >= world.boot_done:
        world.host = "up"
        world.idle = suspended(world.idle)
        world.next_check = t + idle.check_interval_s
        pi_event(world, sm.ComingOnline(), t, rules)  # the sleep hook, on resume
        if t - world.last_plan_run >= REPLAN_EVERY_S:  # the missed re-plan runs now
            run_planner(world, t)
        if world.pending_since is not None:
            world.jobs["inbox upload"] = t + UPLOAD_S
            world.pending_since = None
    if world.host == "up" and world.waiting:
        world.demands.extend((at, t - at <= world.boot_s + 2) for at in world.waiting)
        world.waiting.clear()
    if world.host != "up" or t < world.next_check:
        return
    world.next_check = t + idle.check_interval_s
    world.jobs = {job: until for job, until in world.jobs.items() if until > t}
    results = [CheckResult(name, True, "simulated") for name in world.jobs]
    results.append(CheckResult("users", False, "nobody logged in"))
    decision = decide(results, now, world.idle, idle, next_wake(now, idle))
    world.idle = decision.history
    if decision.action == "sleep":
        wake = decision.wake_at.timestamp() if decision.wake_at else None
        pi_event(world, sm.GoingOffline("suspend", wake), t, rules)
        world.host = "asleep"


def next_wake(now: datetime, idle: IdleConfig) -> NextWake:
    """What ``host.idle.wakes.next_wake`` finds: the backup timer and the planner's."""
    events = []
    for (h, m), source in ((BACKUP_AT, "backup.timer"), (PLANNER_AT, "edgepair-host-plan.timer")):
        at = now.replace(hour=h, minute=m, second=0, microsecond=0)
        events.append((at if at > now else at + timedelta(days=1), source))
    event, source = min(events)
    return NextWake(event - timedelta(seconds=idle.wakeup_delta_s), event, source)


def step_pi(world: World, t: float, inbox: InboxConfig, rules: sm.Rules) -> None:
    beat: sm.Event = sm.HeartbeatOk() if world.host == "up" else sm.HeartbeatFail("timeout")
    pi_event(world, beat, t, rules)
    pi_event(world, sm.Tick(), t, rules)
    state = world.status.state.value
    if world.pending_since is not None:
        pending = Pending(files=1, bytes=1, oldest_mtime=world.pending_since, ready_files=1,
                          ready_bytes=1, oldest_ready_mtime=world.pending_since)
        if wake_due(inbox, state, pending, t, world.last_inbox_wake):
            world.last_inbox_wake = t
            pi_event(world, sm.WakeRequested("inbox"), t, rules)
    if replan_due(world.plan_valid_until, t, 3 * 3600, state, world.last_plan_wake,
                  rules.boot_timeout_s):
        world.last_plan_wake = t
        pi_event(world, sm.WakeRequested("plan"), t, rules)


def pi_event(world: World, event: sm.Event, t: float, rules: sm.Rules) -> None:
    before = world.status
    world.status, actions = sm.step(before, event, t, rules)
    if world.status.state is sm.HostState.WAKING and before.state is not sm.HostState.WAKING:
        world.wakes[wake_reason(world.status.reason or "api")] += 1
        if isinstance(event, sm.WakeRequested) and event.client:
            world.wakes_by_client[event.client] += 1
    if any(isinstance(a, sm.SendWol) for a in actions) and world.host == "asleep":
        world.host = "booting"
        world.boot_done = t + world.boot_s


def account(world: World) -> None:
    watts = {"up": UP_W, "asleep": ASLEEP_W, "booting": BOOT_W}[world.host]
    world.seconds[world.host] += STEP_S
    world.energy_wh += watts * STEP_S / 3600


def report(world: World, args: argparse.Namespace, demand: DemandConfig) -> int:
    hours = args.days * 24
    up_h = (world.seconds["up"] + world.seconds["booting"]) / 3600
    always_on_kwh = UP_W * hours / 1000
    kwh = world.energy_wh / 1000
    missed = sum(1 for _, served in world.demands if not served) + len(world.waiting)
    figures = {
        "days": args.days, "boot_s": args.boot_s,
        "hours_up": round(up_h, 1), "up_share": round(up_h / hours, 3),
        "wakes": dict(sorted(world.wakes.items())), "wakes_total": sum(world.wakes.values()),
        "demands": len(world.demands), "missed_demands": missed,
        "denied_client_wakes": world.wakes_by_client[TV], "timers_missed": world.timers_missed,
        "kwh": round(kwh, 2), "always_on_kwh": round(always_on_kwh, 2),
        "saved_kwh": round(always_on_kwh - kwh, 2),
        "saved_share": round(1 - kwh / always_on_kwh, 3),
    }
    targets = [Target("host up share", figures["up_share"], TARGETS["up_share"], ""),
               Target("always-on kWh still used (share)", round(1 - figures["saved_share"], 3),
                      round(1 - TARGETS["saved_share"], 3), ""),
               Target("missed demands", missed, 0, ""),
               Target("wakes by the denied client", figures["denied_client_wakes"], 0, ""),
               Target("timers missed", world.timers_missed, 0, "")]
    if args.json:
        emit_json({"benchmark": "sleep_week", **figures}, targets)
    else:
        print(f"a simulated week ({args.days} days, boot {args.boot_s:g} s; host {UP_W:g} W up, "
              f"{ASLEEP_W:g} W suspended)")
        print(f"  hours up        {up_h:.1f} h of {hours} h ({figures['up_share']:.1%})")
        print(f"  wakes           {figures['wakes_total']}: " + ", ".join(
            f"{reason} {n}" for reason, n in figures["wakes"].items()))
        print(f"  demands         {len(world.demands)} by the household, {missed} missed; "
              f"{figures['denied_client_wakes']} wakes by the denied TV")
        print(f"  timers missed   {world.timers_missed}")
        print(f"  energy          {kwh:.2f} kWh against {always_on_kwh:.2f} kWh always on: "
              f"{figures['saved_kwh']:.2f} kWh saved ({figures['saved_share']:.1%})")
        for target in targets:
            print(f"  {target.line()}")
    return 0 if all(t.passed for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
