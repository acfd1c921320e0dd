"""When the host must be up again: the next systemd timer or ``wake_schedule`` entry.

The planner's own timer (edgepair-host-plan.timer) always counts when it exists: the
host must be awake for the planner's next run. Parsers are pure; ``run`` is injected.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from handshake.util import weekly
from host.idle.checks import TOOL_TIMEOUT_S, Runner
from host.idle.config import IdleConfig

log = logging.getLogger(__name__)

PLANNER_TIMER = "edgepair-host-plan.timer"
_WEEKDAYS = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}


@dataclass(frozen=True, slots=True)
class NextWake:
    """``at``: when the Pi must wake the host (event minus wakeup_delta_s); None: no need."""

    at: datetime | None
    event_at: datetime | None = None
    source: str = ""  # "edgepair-host-plan.timer", "wake_schedule 07:00"
    error: str | None = None  # a configured timer could not be read: nobody knows


def next_wake(config: IdleConfig, now: datetime, run: Runner = subprocess.run) -> NextWake:
    """The soonest of the configured timers, the planner's timer and the schedule."""
    candidates: list[tuple[datetime, str]] = []
    wanted = (*config.wake_timers, PLANNER_TIMER)
    try:
        timers = list_timers(run)
    except TimersUnavailable as exc:
        if config.wake_timers:
            return NextWake(None, error=str(exc))
        log.debug("no systemd timers (%s): only wake_schedule counts", exc)
        timers = {}
    for unit in wanted:
        at = timers.get(unit)
        if at is not None and at > now:
            candidates.append((at, unit))
        elif unit not in timers and unit != PLANNER_TIMER:
            log.debug("wake timer %s is not loaded", unit)
    scheduled = weekly.next_time(config.wake_schedule, now, zone(config))
    if scheduled is not None:
        hh_mm = scheduled.strftime("%H:%M")
        candidates.append((scheduled.astimezone(UTC), f"wake_schedule {hh_mm}"))
    if not candidates:
        return NextWake(None)
    event, source = min(candidates)
    return NextWake(event - timedelta(seconds=config.wakeup_delta_s), event, source)


def zone(config: IdleConfig) -> tzinfo:
    """The schedule's time zone: configured, else the host's local zone."""
    return weekly.zone(config.timezone)


class TimersUnavailable(Exception):
    """systemctl is missing, failed or hung."""


def list_timers(run: Runner) -> dict[str, datetime | None]:
    """Every timer unit and its next elapse (None: not scheduled): JSON, else the table."""
    base = ["systemctl", "list-timers", "--all", "--no-pager"]
    out = _systemctl(run, [*base, "--output=json"])
    if out is not None:
        try:
            return parse_timers_json(out)
        except ValueError:
            pass  # an old systemctl prints its table regardless
    text = _systemctl(run, [*base, "--no-legend"])
    if text is None:
        raise TimersUnavailable("systemctl list-timers failed")
    return parse_timers_text(text)


def parse_timers_json(text: str) -> dict[str, datetime | None]:
    """``systemctl list-timers --output=json``: ``next`` in µs since the epoch, or null."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(rows, list):
        raise ValueError("not a JSON array")
    out: dict[str, datetime | None] = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("unit"), str):
            usec = row.get("next")
            out[row["unit"]] = datetime.fromtimestamp(usec / 1e6, UTC) \
                if isinstance(usec, int | float) and usec > 0 else None
    return out


def parse_timers_text(text: str, local: tzinfo | None = None) -> dict[str, datetime | None]:
    """The table: ``Mon 2026-12-07 05:00:00 CET 55min left Mon … ago UNIT ACTIVATES``."""
    out: dict[str, datetime | None] = {}
    for line in text.splitlines():
        words = line.split()
        units = [w for w in words if w.endswith(".timer")]
        if not units:
            continue
        at = None
        if len(words) >= 4 and words[0] in _WEEKDAYS:
            at = _stamp(words[1], words[2], words[3], local)
        out[units[0]] = at
    return out


def _stamp(day: str, clock: str, zone_name: str, local: tzinfo | None) -> datetime | None:
    try:
        naive = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    if zone_name == "UTC":
        return naive.replace(tzinfo=UTC)
    # An abbreviation (CET) is the host's own zone: systemctl prints local time.
    tz = local or datetime.now().astimezone().tzinfo
    return naive.replace(tzinfo=tz).astimezone(UTC)


def _systemctl(run: Runner, argv: list[str]) -> str | None:
    try:
        result = run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s: %s", " ".join(argv), exc)
        return None
    if result.returncode != 0:
        return None
    out: str = result.stdout or ""
    return out
