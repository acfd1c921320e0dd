"""The host state machine: a pure ``step(status, event, now, rules) -> (status, actions)``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class HostState(StrEnum):
    ONLINE = "online"
    GOING_OFFLINE = "going_offline"
    OFFLINE = "offline"
    WAKING = "waking"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Rules:
    """The timing parameters of the machine (from ``[host]``)."""

    fall: int = 3
    rise: int = 2
    boot_timeout_s: float = 180.0
    going_offline_grace_s: float = 120.0


@dataclass(frozen=True, slots=True)
class HostStatus:
    """What the machine knows; ``state``, ``since`` and ``wake_at`` survive a restart."""

    state: HostState
    since: float
    ok_streak: int = 0
    fail_streak: int = 0
    wake_at: float | None = None
    reason: str | None = None

    @property
    def dns_target(self) -> str:
        """DNS points at the host only while it is online."""
        return "host" if self.state is HostState.ONLINE else "pi"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "since": self.since, "wake_at": self.wake_at,
                "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostStatus:
        wake_at = data.get("wake_at")
        return cls(state=HostState(data["state"]), since=float(data["since"]),
                   wake_at=None if wake_at is None else float(wake_at),
                   reason=data.get("reason"))


# Events ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HeartbeatOk:
    pass


@dataclass(frozen=True, slots=True)
class HeartbeatFail:
    why: str = ""


@dataclass(frozen=True, slots=True)
class GoingOffline:
    reason: str
    wake_at: float | None = None


@dataclass(frozen=True, slots=True)
class ComingOnline:
    pass


@dataclass(frozen=True, slots=True)
class WakeRequested:
    source: str
    client: str | None = None  # the address that wanted the host (demand wakes)


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: boot timeouts and a one-shot ``wake_at`` fall due on ticks."""


Event = HeartbeatOk | HeartbeatFail | GoingOffline | ComingOnline | WakeRequested | Tick


# Actions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SetDns:
    target: str  # "host" | "pi"


@dataclass(frozen=True, slots=True)
class SendWol:
    source: str


@dataclass(frozen=True, slots=True)
class Alarm:
    message: str


@dataclass(frozen=True, slots=True)
class Resolved:
    message: str


Action = SetDns | SendWol | Alarm | Resolved
Step = tuple[HostStatus, list[Action]]  # what step returns: the new status, the actions


# The reason of the first state of a Pi that has never heard from its host: the dashboard
# and the CLI then say "unknown, no heartbeat yet" instead of "asleep since <start>".
NEVER_SEEN = "never_seen"


def initial(now: float) -> HostStatus:
    """A Pi that has never seen the host treats it as asleep (DNS on the Pi) until ``rise``
    heartbeats say otherwise; ``reason`` says that nothing is known yet."""
    return HostStatus(state=HostState.OFFLINE, since=now, reason=NEVER_SEEN)


def step(status: HostStatus, event: Event, now: float, rules: Rules) -> Step:
    """Apply one event; return the new status and the actions the loop must perform."""
    match event:
        case HeartbeatOk():
            return _heartbeat_ok(status, now, rules)
        case HeartbeatFail():
            return _heartbeat_fail(status, now, rules)
        case GoingOffline(reason=reason, wake_at=wake_at):
            return _going_offline(status, now, reason, wake_at)
        case ComingOnline():
            if status.state is HostState.ONLINE:
                return status, []
            return _enter(status, HostState.ONLINE, now)
        case WakeRequested(source=source):
            return _wake_requested(status, now, source)
        case Tick():
            return _tick(status, now, rules)
    raise AssertionError(f"unknown event {event!r}")  # pragma: no cover


def _heartbeat_ok(status: HostStatus, now: float, rules: Rules) -> Step:
    state = status.state
    status = replace(status, ok_streak=status.ok_streak + 1, fail_streak=0)
    if state is HostState.GOING_OFFLINE:
        if now - status.since >= rules.going_offline_grace_s:
            return _enter(status, HostState.ONLINE, now,
                          note="host kept answering past the going-offline grace")
        return status, []
    if state is not HostState.ONLINE and status.ok_streak >= rules.rise:
        return _enter(status, HostState.ONLINE, now)
    return status, []


def _heartbeat_fail(status: HostStatus, now: float, rules: Rules) -> Step:
    state = status.state
    status = replace(status, fail_streak=status.fail_streak + 1, ok_streak=0)
    if status.fail_streak < rules.fall:
        return status, []
    if state is HostState.ONLINE:
        return _enter(status, HostState.UNREACHABLE, now,
                      alarm="host stopped answering without notice")
    if state is HostState.GOING_OFFLINE:
        return _enter(status, HostState.OFFLINE, now)
    return status, []


def _going_offline(status: HostStatus, now: float, reason: str, wake_at: float | None) -> Step:
    state = status.state
    if state is HostState.GOING_OFFLINE or (state is HostState.OFFLINE and status.ok_streak == 0):
        # A repeated notice (the host retried) updates the wish, not the clock.
        return replace(status, wake_at=wake_at, reason=reason), []
    # Offline but answering again (back unannounced, not yet `rise` beats): a new
    # notice, so its last heartbeats are a shutdown, not a return.
    return _enter(replace(status, wake_at=wake_at), HostState.GOING_OFFLINE, now, reason=reason)


def _wake_requested(status: HostStatus, now: float, source: str) -> Step:
    state = status.state
    if state is HostState.ONLINE:
        return status, []
    if state is HostState.GOING_OFFLINE:
        # A magic packet now would hit a host that is still shutting down; wake it
        # as soon as it is down instead.
        return replace(status, wake_at=now), []
    if state is HostState.WAKING:
        return status, [SendWol(source)]
    return _enter(status, HostState.WAKING, now, reason=source, wol=source)


def _tick(status: HostStatus, now: float, rules: Rules) -> Step:
    state = status.state
    if state is HostState.WAKING and now - status.since >= rules.boot_timeout_s:
        return _enter(status, HostState.UNREACHABLE, now,
                      alarm=f"host did not come up within {rules.boot_timeout_s:.0f} s "
                            "of the wake")
    if (status.wake_at is not None and now >= status.wake_at
            and state in (HostState.OFFLINE, HostState.UNREACHABLE)):
        return _enter(status, HostState.WAKING, now, reason="wake_at", wol="wake_at")
    return status, []


def _enter(status: HostStatus, state: HostState, now: float, *, reason: str | None = None,
           alarm: str | None = None, note: str | None = None,
           wol: str | None = None) -> Step:
    old = status.state
    wake_at = status.wake_at
    if state in (HostState.ONLINE, HostState.WAKING):
        wake_at = None  # the wish is fulfilled (or being fulfilled)
    new = HostStatus(state=state, since=now, ok_streak=0, fail_streak=0, wake_at=wake_at,
                     reason=reason)
    actions: list[Action] = []
    if new.dns_target != status.dns_target:
        actions.append(SetDns(new.dns_target))
    if wol is not None:
        actions.append(SendWol(wol))
    if alarm is not None:
        actions.append(Alarm(alarm))
    if old is HostState.UNREACHABLE and state is not HostState.UNREACHABLE:
        actions.append(Resolved(note or f"host is {state.value} again"))
    elif note is not None:
        actions.append(Resolved(note))
    if state is HostState.OFFLINE and wake_at is not None and now >= wake_at:
        # A wake asked for while the host was going down: send it now that it is down.
        return _enter(new, HostState.WAKING, now, reason="requested", wol="pending")
    return new, actions
