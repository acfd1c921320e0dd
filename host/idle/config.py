"""``[idle]``: when the host may suspend itself, what keeps it awake, when it must be up again."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Check, Section, TimeZone
from handshake.util.weekly import WakeTime

_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.timer$")
_PROCESS_RE = re.compile(r"^[^/\x00]{1,255}$")


def _argv(value: tuple[str, ...]) -> bool:
    return bool(value) and all(value) and "\x00" not in "".join(value)


def _ports(value: tuple[int, ...]) -> bool:
    return all(1 <= port <= 65535 for port in value)


def _timers(value: tuple[str, ...]) -> bool:
    return all(_UNIT_RE.match(name) for name in value)


def _names(value: tuple[str, ...]) -> bool:
    return all(_PROCESS_RE.match(name) for name in value)


Argv = Annotated[tuple[str, ...], Check(_argv, "a command as a non-empty list of non-empty "
                                                "strings, like [\"systemctl\", \"suspend\"]")]


class IdleConfig(Section, frozen=True, kw_only=True):
    """The host suspends itself after ``idle_after_s`` without activity (like autosuspend)."""

    enabled: Annotated[bool, Meta(description="suspend the host when it is idle")] = False
    idle_after_s: Annotated[float, Meta(ge=0, le=7 * 86400,
                                        description="idle this long before suspending")] = 1800.0
    check_interval_s: Annotated[float, Meta(ge=0.05, le=3600,
                                            description="the checks run this often")] = 60.0
    suspend_command: Annotated[Argv, Meta(description="suspends the machine; returns on resume")] = \
        ("systemctl", "suspend")
    dry_run: Annotated[bool, Meta(description="log and record \"would suspend\"; do nothing")] = \
        False
    min_sleep_s: Annotated[float, Meta(ge=0, le=7 * 86400,
                                       description="stay up when the next wake is sooner")] = 900.0
    wakeup_delta_s: Annotated[float, Meta(ge=0, le=86400,
                                          description="wake this much before a wake time")] = 120.0
    smb: Annotated[bool, Meta(description="busy while an SMB client has a file open")] = False
    smb_config: Annotated[Path | None, Meta(
        description="the smb.conf smbstatus reads (default: Samba's own)")] = None
    users: Annotated[bool, Meta(description="busy while a user is logged in (logind, who)")] = \
        False
    load_above: Annotated[float | None, Meta(gt=0, le=10000,
                                             description="busy while the 1-min load is above")] = None
    processes: Annotated[tuple[str, ...], Check(_names, "process names (no \"/\")"),
                         Meta(description="busy while one of these runs")] = ()
    tcp_ports: Annotated[tuple[int, ...], Check(_ports, "ports 1-65535"),
                         Meta(description="busy while a connection to one of these local "
                                          "ports is established")] = ()
    command: Annotated[Argv | None, Meta(description="busy while it exits 0")] = None
    wake_timers: Annotated[tuple[str, ...], Check(_timers, "systemd timer units (name.timer)"),
                           Meta(description="wake for these timers (the planner's always)")] = ()
    wake_schedule: Annotated[tuple[WakeTime, ...], Meta(description="wake at these times")] = ()
    timezone: Annotated[TimeZone | None, Meta(
        description="of wake_schedule; default: the host's")] = None

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.enabled and self.min_sleep_s and self.min_sleep_s < self.wakeup_delta_s:
            yield ("min_sleep_s", f"expected a value ≥ wakeup_delta_s ({self.wakeup_delta_s:g}) "
                   f"or 0, got {self.min_sleep_s:g}")
