"""The public documents as Home Assistant entities: pure, no I/O and no clock.

Each ``Entity`` is one value with the Home Assistant metadata it needs (device class, state
class, unit). ``entities(sources)`` turns what the daemon last read from the public files
into the list; ``pi.mqtt.discovery`` turns that list into topics and payloads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from handshake.documents import (
    ControlDocument,
    Document,
    HostDocument,
    InboxDocument,
    PiDocument,
    PowerDocument,
    UsageDocument,
)

HOST_STATES = ("online", "going_offline", "offline", "waking", "unreachable")
CONTROL_MODES = ("following", "safe", "safe_unverified")
# What a node reading's unit says about it (Home Assistant device classes and the state
# class the Energy dashboard needs for energy).
_NODE_UNITS: dict[str, tuple[str, str]] = {
    "°C": ("temperature", "measurement"), "°F": ("temperature", "measurement"),
    "W": ("power", "measurement"), "kW": ("power", "measurement"),
    "Wh": ("energy", "total_increasing"), "kWh": ("energy", "total_increasing"),
    "V": ("voltage", "measurement"), "A": ("current", "measurement"),
    "hPa": ("pressure", "measurement"), "lx": ("illuminance", "measurement"),
    "ppm": ("carbon_dioxide", "measurement"),
}
_SLUG_RE = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Source:
    """One public file as the daemon last read it: the last usable content, and whether it is
    fresh (a missing writer or a stale file makes its entities unavailable, not frozen)."""

    document: Document | dict[str, Any]
    available: bool


@dataclass(frozen=True, slots=True)
class Entity:
    """One Home Assistant entity: ``path`` is its state topic below the prefix."""

    component: str  # sensor | binary_sensor | button
    object_id: str
    name: str
    path: str
    source: str  # whose availability it shares: a public file, or one node
    state: object = None  # None: unknown
    config: dict[str, Any] = field(default_factory=dict)


def entities(sources: Mapping[str, Source], *, allow_wake: bool = False) -> list[Entity]:
    """Every entity the public files describe, in a stable order."""
    out: list[Entity] = []
    for name, build in _BUILDERS:
        source = sources.get(name)
        if source is not None:
            out.extend(build(source.document))
    if allow_wake:
        out.append(Entity("button", "wake_host", "Wake host", "host/wake", "host",
                          config={"icon": "mdi:power"}))
    return out


def availability(sources: Mapping[str, Source]) -> dict[str, bool]:
    """Whether each entity source is live: a public file that is fresh, and each node that is
    online in a fresh nodes.json (an offline node's last readings are not current)."""
    out = {name: source.available for name, source in sources.items()}
    nodes = sources.get("nodes")
    listed = nodes.document.get("nodes") if nodes and isinstance(nodes.document, dict) else None
    for node in listed if isinstance(listed, list) else []:
        if isinstance(node, dict) and isinstance(node.get("hwid"), str):
            key = f"node/{slug(node['hwid'])}"
            out.setdefault(key, bool(nodes and nodes.available) and node.get("state") == "online")
    return out


def slug(text: str) -> str:
    """A name as a topic level and object id: lower case letters, digits and ``_``."""
    return _SLUG_RE.sub("_", text.lower()).strip("_") or "x"


def _sensor(object_id: str, name: str, path: str, source: str, state: object, *,
            device_class: str | None = None, state_class: str | None = None,
            unit: str | None = None, **extra: Any) -> Entity:
    config = {k: v for k, v in (("device_class", device_class), ("state_class", state_class),
                                ("unit_of_measurement", unit)) if v is not None}
    return Entity("sensor", object_id, name, path, source, state, config | extra)


def _binary(object_id: str, name: str, path: str, source: str, on: bool | None,
            device_class: str, **extra: Any) -> Entity:
    return Entity("binary_sensor", object_id, name, path, source, on,
                  {"device_class": device_class} | extra)


def _host(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    if not isinstance(doc, HostDocument):
        return
    beat = doc.last_heartbeat or {}
    yield _sensor("host_state", "Host state", "host/state", "host", doc.state,
                  device_class="enum", options=list(HOST_STATES))
    yield _binary("host_online", "Host online", "host/online", "host", doc.state == "online",
                  "connectivity")
    yield _sensor("heartbeat_latency", "Heartbeat latency", "host/heartbeat_ms", "host",
                  beat.get("latency_ms") if beat.get("ok") else None,
                  device_class="duration", state_class="measurement", unit="ms",
                  entity_category="diagnostic")
    yield _sensor("next_wake", "Next wake", "host/next_wake", "host",
                  (doc.next_wake or {}).get("at"), device_class="timestamp")


def _pi(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    if not isinstance(doc, PiDocument):
        return
    memory, disk = doc.memory or {}, doc.disk or {}
    diag = {"entity_category": "diagnostic"}
    yield _sensor("pi_load", "Pi load", "pi/load", "pi", doc.load[0] if doc.load else None,
                  state_class="measurement", **diag)
    yield _sensor("pi_memory_used", "Pi memory used", "pi/memory_used_pct", "pi",
                  _pct(memory.get("used_bytes"), memory.get("total_bytes")),
                  state_class="measurement", unit="%", **diag)
    yield _sensor("pi_disk_used", "Pi disk used", "pi/disk_used_pct", "pi",
                  _pct(disk.get("used_bytes"), disk.get("total_bytes")),
                  state_class="measurement", unit="%", **diag)
    yield _sensor("pi_temperature", "Pi temperature", "pi/temperature_c", "pi",
                  doc.temperature_c, device_class="temperature", state_class="measurement",
                  unit="°C", **diag)


def _power(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    if not isinstance(doc, PowerDocument):
        return
    for plug in doc.plugs:
        key = slug(plug.name)
        at = f"plug/{key}"
        yield _sensor(f"plug_{key}_power", f"{plug.name} power", f"{at}/power_w", "power",
                      plug.live_w, device_class="power", state_class="measurement", unit="W")
        # total_increasing: a counter that resets (at midnight, on the 1st) is a new cycle,
        # which is what Home Assistant's Energy dashboard expects of a plug.
        yield _sensor(f"plug_{key}_energy_today", f"{plug.name} energy today",
                      f"{at}/energy_today_kwh", "power", plug.today_kwh,
                      device_class="energy", state_class="total_increasing", unit="kWh")
        yield _sensor(f"plug_{key}_energy_month", f"{plug.name} energy this month",
                      f"{at}/energy_month_kwh", "power", plug.month_kwh,
                      device_class="energy", state_class="total_increasing", unit="kWh")
        yield _binary(f"plug_{key}_problem", f"{plug.name} problem", f"{at}/problem", "power",
                      plug.health != "ok", "problem", entity_category="diagnostic")


def _inbox(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    if not isinstance(doc, InboxDocument):
        return
    pending = doc.pending
    yield _sensor("inbox_pending_files", "Inbox files waiting", "inbox/pending_files", "inbox",
                  pending.files, state_class="measurement", unit="files", icon="mdi:inbox")
    yield _sensor("inbox_pending_bytes", "Inbox bytes waiting", "inbox/pending_bytes", "inbox",
                  pending.bytes, device_class="data_size", state_class="measurement", unit="B")
    yield _sensor("inbox_oldest", "Inbox oldest file", "inbox/oldest", "inbox", pending.oldest,
                  device_class="timestamp")
    yield _sensor("inbox_last_flush", "Inbox last delivery", "inbox/last_flush", "inbox",
                  (doc.last_flush or {}).get("at"), device_class="timestamp")


def _control(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    if not isinstance(doc, ControlDocument):
        return
    back = doc.readback
    yield _binary("safe_state", "Safe state", "control/safe_state", "control",
                  doc.mode != "following", "problem")
    yield _sensor("control_mode", "Control mode", "control/mode", "control",
                  doc.mode if doc.mode in CONTROL_MODES else None,
                  device_class="enum", options=list(CONTROL_MODES))
    yield _sensor("control_reason", "Control reason", "control/reason", "control", doc.reason,
                  entity_category="diagnostic")
    yield _sensor("battery_soc", "Battery", "control/soc_pct", "control",
                  back.soc_pct if back else None, device_class="battery",
                  state_class="measurement", unit="%")
    yield _sensor("battery_power", "Battery power", "control/battery_w", "control",
                  back.battery_w if back else None, device_class="power",
                  state_class="measurement", unit="W")
    yield _sensor("grid_power", "Grid power", "control/grid_w", "control",
                  back.grid_w if back else None, device_class="power",
                  state_class="measurement", unit="W")
    yield _sensor("control_writes_today", "Register writes today", "control/writes_today",
                  "control", doc.writes_today, state_class="total_increasing",
                  unit="writes", entity_category="diagnostic")


def _usage(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    if not isinstance(doc, UsageDocument):
        return
    today = doc.days[-1] if doc.days else None  # rebuilt every minute: the last day is today
    yield _sensor("host_hours_online_today", "Host hours online today", "usage/hours_online_today",
                  "usage", today.hours_online if today else None, device_class="duration",
                  state_class="measurement", unit="h")
    yield _sensor("host_wakes_today", "Host wakes today", "usage/wakes_today", "usage",
                  sum(today.wakes.values()) if today else None, state_class="total_increasing",
                  unit="wakes", icon="mdi:alarm")
    yield _sensor("saved_energy_month", "Energy saved this month", "usage/saved_kwh_month",
                  "usage", doc.month.saved_kwh if doc.month else None, device_class="energy",
                  state_class="total", unit="kWh")


def _nodes(doc: Document | dict[str, Any]) -> Iterator[Entity]:
    """nodes.json (issue 12), read as raw JSON: whatever is not in the expected shape is skipped."""
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    seen: set[str] = set()
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or not isinstance(node.get("hwid"), str):
            continue
        key = slug(node["hwid"])
        if key in seen:
            continue
        seen.add(key)
        label: str = node["name"] if isinstance(node.get("name"), str) else node["hwid"]
        at = f"node/{key}"
        yield _binary(f"node_{key}_online", f"{label} online", f"{at}/online", "nodes",
                      node.get("state") == "online", "connectivity")
        readings = node.get("readings")
        for reading, value in sorted(readings.items()) if isinstance(readings, dict) else []:
            entity = _reading(key, label, reading, value)
            if entity is not None:
                yield entity


def _reading(key: str, label: str, reading: str, value: object) -> Entity | None:
    if not isinstance(value, dict) or not isinstance(reading, str):
        return None
    number, unit = value.get("value"), value.get("unit")
    rid, path, source = f"node_{key}_{slug(reading)}", f"node/{key}/{slug(reading)}", f"node/{key}"
    if isinstance(number, bool):
        return Entity("binary_sensor", rid, f"{label} {reading}", path, source, number)
    if not isinstance(number, int | float):
        return None
    unit = unit if isinstance(unit, str) and unit else None
    device_class, state_class = _NODE_UNITS.get(unit or "", (None, "measurement"))
    return _sensor(rid, f"{label} {reading}", path, source, number, device_class=device_class,
                   state_class=state_class, unit=unit)


def _pct(part: object, whole: object) -> float | None:
    if isinstance(part, int | float) and isinstance(whole, int | float) and whole > 0:
        return round(100 * part / whole, 1)
    return None


# The public files, in the order their entities are listed (file name without .json).
_BUILDERS = (("host", _host), ("pi", _pi), ("power", _power), ("inbox", _inbox),
             ("control", _control), ("usage", _usage), ("nodes", _nodes))
SOURCES = tuple(name for name, _ in _BUILDERS)
