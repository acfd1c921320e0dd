"""host.idle.decide (pure, table-driven) and host.idle.wakes (the next wake's parsers)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from handshake.util.weekly import WakeTime
from host.idle import wakes
from host.idle.checks import CheckResult
from host.idle.config import IdleConfig
from host.idle.decide import MAX_BACKOFF_S, Decision, History, decide, suspend_failed, suspended
from host.idle.wakes import NextWake

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # a Monday
CONFIG = msgspec.structs.replace(IdleConfig(), enabled=True, idle_after_s=600, min_sleep_s=900,
                                 wakeup_delta_s=120, check_interval_s=60)
IDLE = [CheckResult("activity", False, "nothing in progress"),
        CheckResult("smb", False, "no SMB sessions")]
BUSY = [*IDLE, CheckResult("processes", True, "rsync (pid 10)")]
ERROR = [*IDLE, CheckResult("smb", True, "smbstatus: not found", error=True)]
NO_WAKE = NextWake(None)


def ago(s: float) -> datetime:
    return NOW - timedelta(seconds=s)


def later(s: float) -> datetime:
    return NOW + timedelta(seconds=s)


@pytest.mark.parametrize(("results", "history", "next_wake", "action", "why", "left"), [
    # Busy: awake, idle time reset.
    (BUSY, History(idle_since=ago(3000)), NO_WAKE, "stay", "busy: processes: rsync (pid 10)", None),
    # A check that cannot tell is busy, and says so.
    (ERROR, History(), NO_WAKE, "stay", "busy: smb: smbstatus: not found (check failed)", None),
    # Idle from now on: the whole idle_after_s is left.
    (IDLE, History(), NO_WAKE, "wait", "idle for 0 s; sleeping in 600 s", 600.0),
    (IDLE, History(idle_since=ago(590)), NO_WAKE, "wait", "idle for 590 s; sleeping in 10 s", 10.0),
    # Idle long enough, nothing to wake for: sleep without wake_at.
    (IDLE, History(idle_since=ago(600)), NO_WAKE, "sleep", "idle for 600 s; wake at none", 0.0),
    # The next wake is sooner than min_sleep_s: stay up.
    (IDLE, History(idle_since=ago(700)), NextWake(later(899), later(1019), "backup.timer"),
     "stay", "idle, but the next wake (backup.timer, 2026-12-07T03:14:59+00:00) is in 899 s, "
             "sooner than min_sleep_s (900 s)", None),
    (IDLE, History(idle_since=ago(700)), NextWake(later(900), later(1020), "wake_schedule 03:17"),
     "sleep", "idle for 700 s; wake at 2026-12-07T03:15:00+00:00 (wake_schedule 03:17)", 0.0),
    # Unreadable configured timers: nobody knows when to wake, so stay.
    (IDLE, History(idle_since=ago(700)), NextWake(None, error="systemctl list-timers failed"),
     "stay", "idle, but the next wake is unknown: systemctl list-timers failed", None),
    # Backing off after a failed suspend.
    (IDLE, History(idle_since=ago(700), backoff_until=later(120), failures=2), NO_WAKE,
     "wait", "suspend failed 2 time(s); retrying in 120 s", 120.0),
    (IDLE, History(idle_since=ago(700), backoff_until=ago(1), failures=2), NO_WAKE,
     "sleep", "idle for 700 s; wake at none", 0.0),
])
def test_decide(results: list[CheckResult], history: History, next_wake: NextWake, action: str,
                why: str, left: float | None) -> None:
    decision = decide(results, NOW, history, CONFIG, next_wake)
    assert (decision.action, decision.why, decision.seconds_left) == (action, why, left)
    if action == "sleep":
        assert decision.wake_at == next_wake.at


def test_busy_resets_idle_since_and_idle_keeps_it() -> None:
    d: Decision = decide(BUSY, NOW, History(idle_since=ago(100), failures=1), CONFIG, NO_WAKE)
    assert d.history == History(idle_since=None, failures=1)
    d = decide(IDLE, NOW, d.history, CONFIG, NO_WAKE)
    assert d.history.idle_since == NOW
    d = decide(IDLE, later(30), d.history, CONFIG, NO_WAKE)
    assert d.history.idle_since == NOW
    assert d.seconds_left == 570


def test_backoff_doubles_from_check_interval_and_is_capped() -> None:
    h = History(idle_since=ago(700))
    delays = []
    for _ in range(9):
        h = suspend_failed(h, NOW, CONFIG)
        assert h.backoff_until is not None
        delays.append((h.backoff_until - NOW).total_seconds())
    assert delays == [60, 120, 240, 480, 960, 1920, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert h.failures == 9
    assert h.idle_since == ago(700)
    assert suspended(h) == History()


# -- wakes -------------------------------------------------------------------------------

TIMERS_JSON = ('[{"next":1765083600000000,"left":3595000000,"last":1765080000000000,'
               '"passed":5000000,"unit":"edgepair-host-plan.timer",'
               '"activates":"edgepair-host-plan.service"},'
               '{"next":1765090800000000,"left":10795000000,"last":null,"passed":null,'
               '"unit":"backup.timer","activates":"backup.service"},'
               '{"next":null,"left":null,"last":null,"passed":null,"unit":"off.timer",'
               '"activates":"off.service"}]')
TIMERS_TEXT = (
    "Sun 2025-12-07 05:00:00 UTC 59min left Sun 2025-12-07 04:00:00 UTC 5s ago "
    "edgepair-host-plan.timer edgepair-host-plan.service\n"
    "Sun 2025-12-07 07:00:00 CET 2h left    n/a                         n/a    "
    "backup.timer             backup.service\n"
    "n/a                         n/a        n/a                         n/a    "
    "off.timer                off.service\n")


def run_with(answers: dict[tuple[str, ...], tuple[int, str]]) -> Any:
    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        code, out = answers.get(tuple(argv), (1, ""))
        return subprocess.CompletedProcess(argv, code, out, "")
    return run


LIST = ("systemctl", "list-timers", "--all", "--no-pager")


def test_timer_parsers_json_and_text() -> None:
    assert wakes.parse_timers_json(TIMERS_JSON) == {
        "edgepair-host-plan.timer": datetime(2025, 12, 7, 5, 0, tzinfo=UTC),
        "backup.timer": datetime(2025, 12, 7, 7, 0, tzinfo=UTC),
        "off.timer": None}
    assert wakes.parse_timers_text(TIMERS_TEXT, ZoneInfo("Europe/Berlin")) == {
        "edgepair-host-plan.timer": datetime(2025, 12, 7, 5, 0, tzinfo=UTC),
        "backup.timer": datetime(2025, 12, 7, 6, 0, tzinfo=UTC),
        "off.timer": None}


def test_next_wake_is_the_soonest_minus_the_delta_and_the_planner_always_counts() -> None:
    now = datetime(2025, 12, 7, 4, 0, 5, tzinfo=UTC)
    run = run_with({(*LIST, "--output=json"): (0, TIMERS_JSON)})
    config = msgspec.structs.replace(CONFIG, wake_timers=("backup.timer",))
    assert wakes.next_wake(config, now, run) == NextWake(
        datetime(2025, 12, 7, 4, 58, tzinfo=UTC), datetime(2025, 12, 7, 5, 0, tzinfo=UTC),
        "edgepair-host-plan.timer")
    # A schedule entry sooner than any timer wins (local time in its zone).
    config = msgspec.structs.replace(config, timezone="Europe/Berlin",
                                     wake_schedule=(WakeTime(at="05:30", days=(6,)),))
    assert wakes.next_wake(config, now, run).source == "wake_schedule 05:30"
    assert wakes.next_wake(config, now, run).at == datetime(2025, 12, 7, 4, 28, tzinfo=UTC)
    # Without JSON support, the table.
    run = run_with({(*LIST, "--no-legend"): (0, TIMERS_TEXT)})
    assert wakes.next_wake(CONFIG, now, run).source == "edgepair-host-plan.timer"


def test_unreadable_timers_are_an_error_only_when_configured() -> None:
    now = datetime(2025, 12, 7, 4, 0, tzinfo=UTC)
    broken = run_with({})
    assert wakes.next_wake(CONFIG, now, broken) == NextWake(None)
    config = msgspec.structs.replace(CONFIG, wake_timers=("backup.timer",))
    assert wakes.next_wake(config, now, broken).error == "systemctl list-timers failed"
    config = msgspec.structs.replace(CONFIG, timezone="UTC",
                                     wake_schedule=(WakeTime(at="07:00", days=(0, 1, 2, 3, 4)),))
    # Sunday 04:00 → Monday 07:00.
    assert wakes.next_wake(config, now, broken).event_at == datetime(2025, 12, 8, 7, 0, tzinfo=UTC)
