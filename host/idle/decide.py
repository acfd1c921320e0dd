"""The idle decision, pure: the checks' results, the clock and the history → what to do.

Like the Pi's host state machine: frozen values in, a frozen Decision out, no I/O. The
loop (host.idle.loop) runs the checks, calls ``decide`` and carries the Decision out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from host.idle.checks import CheckResult
from host.idle.config import IdleConfig
from host.idle.wakes import NextWake

# A suspend that keeps failing is retried at most this rarely.
MAX_BACKOFF_S = 3600.0

Action = Literal["stay", "wait", "sleep"]


@dataclass(frozen=True, slots=True)
class History:
    """What the decision remembers between checks."""

    idle_since: datetime | None = None
    backoff_until: datetime | None = None
    failures: int = 0  # failed suspends in a row


@dataclass(frozen=True, slots=True)
class Decision:
    """``stay`` (busy, or a wake too soon), ``wait`` (idle, not yet), ``sleep`` (now)."""

    action: Action
    why: str
    history: History
    seconds_left: float | None = None  # until the host would sleep, when it is waiting
    wake_at: datetime | None = None  # with sleep: when the Pi must wake the host


def decide(results: list[CheckResult], now: datetime, history: History, config: IdleConfig,
           next_wake: NextWake) -> Decision:
    """What to do now (see the module docstring)."""
    busy = [r for r in results if r.busy]
    if busy:
        why = "; ".join(f"{r.name}: {r.detail}" + (" (check failed)" if r.error else "")
                        for r in busy)
        return Decision("stay", f"busy: {why}", replace(history, idle_since=None))
    idle_since = history.idle_since or now
    history = replace(history, idle_since=idle_since)
    idle_for = (now - idle_since).total_seconds()
    left = config.idle_after_s - idle_for
    if left > 0:
        return Decision("wait", f"idle for {idle_for:.0f} s; sleeping in {left:.0f} s",
                        history, seconds_left=left)
    if history.backoff_until is not None and now < history.backoff_until:
        wait_s = (history.backoff_until - now).total_seconds()
        return Decision("wait", f"suspend failed {history.failures} time(s); retrying in "
                                f"{wait_s:.0f} s", history, seconds_left=wait_s)
    if next_wake.error is not None:
        return Decision("stay", f"idle, but the next wake is unknown: {next_wake.error}",
                        history)
    if next_wake.at is not None:
        until = (next_wake.at - now).total_seconds()
        if until < config.min_sleep_s:
            return Decision("stay", f"idle, but the next wake ({next_wake.source}, "
                                    f"{next_wake.at.isoformat()}) is in {max(until, 0):.0f} s, "
                                    f"sooner than min_sleep_s ({config.min_sleep_s:g} s)",
                            history)
    at = next_wake.at.isoformat() if next_wake.at else "none"
    return Decision("sleep", f"idle for {idle_for:.0f} s; wake at {at}"
                             + (f" ({next_wake.source})" if next_wake.source else ""),
                    history, seconds_left=0.0, wake_at=next_wake.at)


def suspended(history: History) -> History:
    """The suspend command returned: the machine just woke, idle time starts again."""
    return History()


def suspend_failed(history: History, now: datetime, config: IdleConfig) -> History:
    """Back off, doubling from check_interval_s up to MAX_BACKOFF_S."""
    failures = history.failures + 1
    delay = min(config.check_interval_s * 2 ** (failures - 1), MAX_BACKOFF_S)
    return replace(history, failures=failures, backoff_until=now + timedelta(seconds=delay))
