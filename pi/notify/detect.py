"""Alarms from successive public documents: pure functions, the clock passed in.

``observe`` turns the documents read now into the conditions that hold (the host is
unreachable, a plug does not answer, the disk is low…), and which domains it could judge:
a missing or stale document neither raises nor clears anything. ``step`` compares them with
what was tracked so far and returns the events to send:

- a condition must hold ``debounce_s`` before its alarm is raised (a blip is never sent);
- a raised alarm is sent once, however long it lasts (deduplicated by its key);
- its end must hold ``debounce_s`` too before the "resolved" event (flapping is one alarm).

The tracked state is plain data the service persists with its outbox, so a restart neither
repeats a raised alarm nor loses the end of one that ended while the daemon was down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from handshake.documents import (
    ControlDocument,
    HostDocument,
    InboxDocument,
    PiDocument,
    PowerDocument,
)
from handshake.util.timeutil import iso, parse_iso


@dataclass(frozen=True, slots=True)
class Condition:
    """Something wrong now: ``key`` identifies it, ``event`` raises it, ``clear`` ends it."""

    key: str
    event: str
    clear: str | None
    title: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """The conditions that hold now, the domains judged (fresh documents) and the host state."""

    conditions: Mapping[str, Condition]
    known: frozenset[str]
    host_state: str | None = None
    host_message: str | None = None


@dataclass(frozen=True, slots=True)
class Docs:
    """The public documents as read now; None when missing, unusable or stale."""

    host: HostDocument | None = None
    power: PowerDocument | None = None
    pi: PiDocument | None = None
    inbox: InboxDocument | None = None
    control: ControlDocument | None = None
    nodes: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """The thresholds of the conditions (``[notify_options]``, ``[inbox] alert_after_s``)."""

    disk_free_min_pct: float = 10.0
    memory_available_min_pct: float = 10.0
    inbox_alert_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Tracked:
    """One condition being followed: pending until debounced, then raised until it ends."""

    condition: Condition
    first_seen: float
    raised: bool = False
    absent_since: float | None = None


@dataclass(frozen=True, slots=True)
class State:
    """Everything ``step`` remembers between two observations."""

    alarms: Mapping[str, Tracked] = field(default_factory=dict)
    host_state: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One notification: ``id`` is stable (receivers may deduplicate on it)."""

    id: str
    event: str
    key: str
    severity: str  # alarm | resolved | info
    title: str
    message: str
    at: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "key": self.key, "severity": self.severity,
                "title": self.title, "message": self.message, "at": self.at,
                "details": dict(self.details)}


# -- observe ----------------------------------------------------------------------------------


def observe(docs: Docs, limits: Limits, now: float, previous_host_state: str | None) -> Observation:
    """The conditions that hold in ``docs`` at ``now``."""
    found: list[Condition] = []
    known: set[str] = set()
    host_state = host_message = None
    if docs.host is not None:
        known.add("host")
        host_state = docs.host.state
        host_message = f"the host is {host_state.replace('_', ' ')}"
        found += _host(docs.host, previous_host_state)
    if docs.power is not None:
        known.add("plug")
        found += [Condition(f"plug:{p.name}", "plug_unreachable", "plug_back",
                            f"Plug {p.name} unreachable",
                            f"the plug {p.name} ({p.role}) does not answer: {p.health}"
                            + (f" ({p.error})" if p.error else ""),
                            {"plug": p.name, "role": p.role, "health": p.health,
                             "last_seen": p.last_seen})
                  for p in docs.power.plugs if p.health != "ok"]
    if docs.pi is not None:
        known.update(("disk", "memory", "backup"))
        found += _pi(docs.pi, limits)
    if docs.inbox is not None and limits.inbox_alert_after_s is not None:
        known.add("inbox")
        found += _inbox(docs.inbox, limits.inbox_alert_after_s, now)
    if docs.control is not None:
        known.add("safe_state")
        control = docs.control
        if control.mode != "following":
            found.append(Condition(
                "safe_state", "safe_state", "safe_state_left", "Control in the safe state",
                f"control holds the devices in the safe state: {control.reason}"
                + (f" ({control.detail})" if control.detail else ""),
                {"mode": control.mode, "reason": control.reason, "detail": control.detail}))
    if docs.nodes is not None:
        known.add("node")
        found += _nodes(docs.nodes)
    return Observation({c.key: c for c in found}, frozenset(known), host_state, host_message)


def _host(doc: HostDocument, previous: str | None) -> list[Condition]:
    if doc.state != "unreachable":
        return []
    power = doc.power or {}
    verdict = power.get("state")
    how = {"hung": "hung (its plug still draws working power)", "off": "off (its plug draws "
           "nothing)"}.get(str(verdict), "not answering")
    details = {"since": doc.since, "power": verdict, "watts": power.get("watts"),
               "alarm": (doc.alarm or {}).get("message")}
    last_wake = doc.last_wake or {}
    if previous == "waking":
        reason = last_wake.get("source") or doc.reason or "a wake"
        return [Condition("host", "wake_timeout", "host_back", "Wake timed out",
                          f"the host did not come up after the {reason} wake"
                          f" (within {doc.boot_timeout_s or 0:.0f} s); it is {how}",
                          {**details, "wake": last_wake})]
    return [Condition("host", "host_unreachable", "host_back", "Host unreachable",
                      f"the host stopped answering without saying so; it is {how}", details)]


def _pi(doc: PiDocument, limits: Limits) -> list[Condition]:
    out = []
    disk, memory = doc.disk or {}, doc.memory or {}
    pct = _percent(disk.get("free_bytes"), disk.get("total_bytes"))
    if pct is not None and pct < limits.disk_free_min_pct:
        out.append(Condition("disk", "disk_low", "disk_ok", "Pi disk low",
                             f"{pct:.1f} % free on {disk.get('path')} "
                             f"(alarm below {limits.disk_free_min_pct:g} %)",
                             {"free_bytes": disk.get("free_bytes"), "free_pct": round(pct, 1)}))
    pct = _percent(memory.get("available_bytes"), memory.get("total_bytes"))
    if pct is not None and pct < limits.memory_available_min_pct:
        out.append(Condition("memory", "memory_low", "memory_ok", "Pi memory low",
                             f"{pct:.1f} % of the Pi's memory available "
                             f"(alarm below {limits.memory_available_min_pct:g} %)",
                             {"available_bytes": memory.get("available_bytes"),
                              "available_pct": round(pct, 1)}))
    backup = doc.backup or {}
    error = backup.get("last_error")
    if backup.get("enabled") and isinstance(error, dict):
        out.append(Condition("backup", "backup_failed", "backup_ok", "Pi backup failing",
                             f"the Pi's backup to the host failed: {error.get('message')}",
                             {"last_error": error, "last_ok": backup.get("last_ok")}))
    return out


def _inbox(doc: InboxDocument, alert_after_s: float, now: float) -> list[Condition]:
    oldest = _time(doc.pending.oldest)
    if not doc.pending.files or oldest is None or now - oldest <= alert_after_s:
        return []
    hours = (now - oldest) / 3600
    return [Condition("inbox", "inbox_waiting", "inbox_cleared", "Inbox file waiting",
                      f"{doc.pending.files} file(s) wait in the Pi's inbox, the oldest for "
                      f"{hours:.1f} h (alarm after {alert_after_s / 3600:g} h)",
                      {"files": doc.pending.files, "bytes": doc.pending.bytes,
                       "oldest": doc.pending.oldest, "host_state": doc.host_state})]


def _nodes(doc: Mapping[str, Any]) -> list[Condition]:
    found = doc.get("nodes")
    out = []
    for node in found if isinstance(found, list) else ():
        if isinstance(node, dict) and isinstance(node.get("hwid"), str) \
                and node.get("state") == "pending":
            hwid = node["hwid"]
            out.append(Condition(f"node:{hwid}", "node_pending", None, "New node waiting",
                                 f"a new node {hwid} waits for approval "
                                 f"(edgepair node approve {hwid})",
                                 {"hwid": hwid, "firmware": node.get("firmware"),
                                  "capabilities": node.get("capabilities")}))
    return out


# -- step -------------------------------------------------------------------------------------


def step(state: State, observation: Observation, now: float,
         debounce_s: float) -> tuple[State, list[Event]]:
    """The tracked alarms after ``observation``, and the events it gives."""
    alarms = dict(state.alarms)
    events: list[Event] = []
    for key, condition in observation.conditions.items():
        tracked = alarms.get(key)
        if tracked is None:
            tracked = Tracked(condition, first_seen=now)
        elif tracked.raised:
            tracked = replace(tracked, absent_since=None)  # back before its end was sure
        if not tracked.raised and now - tracked.first_seen >= debounce_s:
            tracked = replace(tracked, raised=True)
            events.append(_event(tracked, "raise", now))
        alarms[key] = tracked
    for key, tracked in list(alarms.items()):
        if key in observation.conditions or _domain(key) not in observation.known:
            continue
        if not tracked.raised:
            del alarms[key]  # a blip shorter than the debounce: never sent
            continue
        absent_since = tracked.absent_since if tracked.absent_since is not None else now
        if now - absent_since >= debounce_s:
            del alarms[key]
            if tracked.condition.clear is not None:
                events.append(_event(tracked, "clear", now, observation))
        else:
            alarms[key] = replace(tracked, absent_since=absent_since)
    host_state = observation.host_state if "host" in observation.known else state.host_state
    return State(alarms, host_state), events


def _event(tracked: Tracked, kind: str, now: float,
           observation: Observation | None = None) -> Event:
    condition = tracked.condition
    ident = f"{condition.key}@{round(tracked.first_seen * 1000)}:{kind}"
    if kind == "raise":
        severity = "alarm" if condition.clear is not None else "info"
        return Event(ident, condition.event, condition.key, severity, condition.title,
                     condition.message, iso(now) or "", condition.details)
    assert condition.clear is not None
    message = f"resolved: {condition.title.lower()}"
    if condition.key == "host" and observation is not None and observation.host_message:
        message = f"resolved: {observation.host_message}"
    return Event(ident, condition.clear, condition.key, "resolved",
                 f"{condition.title}: resolved", message, iso(now) or "",
                 {"raised_at": iso(tracked.first_seen)})


def _domain(key: str) -> str:
    return key.split(":", 1)[0]


def _percent(part: Any, whole: Any) -> float | None:
    if isinstance(part, int | float) and isinstance(whole, int | float) and whole > 0:
        return 100.0 * part / whole
    return None


def _time(text: str | None) -> float | None:
    try:
        return parse_iso(text).timestamp() if text else None
    except (ValueError, OverflowError):
        return None


# -- persistence (plain JSON) -------------------------------------------------------------------


def state_to_json(state: State) -> dict[str, Any]:
    return {"host_state": state.host_state, "alarms": {
        key: {"condition": {"key": t.condition.key, "event": t.condition.event,
                            "clear": t.condition.clear, "title": t.condition.title,
                            "message": t.condition.message, "details": dict(t.condition.details)},
              "first_seen": t.first_seen, "raised": t.raised, "absent_since": t.absent_since}
        for key, t in state.alarms.items()}}


def state_from_json(data: Mapping[str, Any]) -> State:
    """The state ``state_to_json`` wrote; KeyError/TypeError/ValueError when it is not that."""
    alarms = {}
    for key, entry in dict(data.get("alarms") or {}).items():
        condition = Condition(**entry["condition"])
        alarms[str(key)] = Tracked(condition, float(entry["first_seen"]), bool(entry["raised"]),
                                   None if entry.get("absent_since") is None
                                   else float(entry["absent_since"]))
    host_state = data.get("host_state")
    return State(alarms, host_state if isinstance(host_state, str) else None)
