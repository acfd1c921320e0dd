"""Pure functions from public documents to Prometheus metric families (no files, no clock).

One function per document. Each takes the typed document (``nodes`` the raw JSON: its
typed document lands with the node daemon) and returns the families of its value series.
Whether a document is fresh is the collector's business (``collector.py``): a stale
document exports only its age, never its values as if they were live.

Counters come from what the writers count: a plug's ``month_kwh`` (resets at the start of
a month), the month's wakes by reason, today's failovers, the inbox's deliveries since its
daemon started. Prometheus' ``increase()`` and ``rate()`` take a reset in their stride.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from handshake.documents import (
    ControlDocument,
    HostDocument,
    InboxDocument,
    PiDocument,
    PiholeDocument,
    PowerDocument,
    UsageDocument,
)
from handshake.messages import WAKE_REASONS
from handshake.util.timeutil import parse_iso

PREFIX = "edgepair_"
HOST_STATES = ("online", "going_offline", "offline", "waking", "unreachable")
CONTROL_MODES = ("following", "safe", "safe_unverified")
NODE_STATES = ("pending", "online", "offline")
HOST_POWER_STATES = ("drawing", "hung", "off", "unknown")


def gauge(name: str, doc: str, value: float | None = None,
          labels: Mapping[str, str] | None = None) -> GaugeMetricFamily:
    """A gauge family holding one sample (none when ``value`` is None: the series is absent)."""
    family = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels or ()))
    if value is not None:
        family.add_metric(list((labels or {}).values()), value)
    return family


def labelled(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    """An empty gauge family with these label names, for ``add_metric`` per series."""
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``; prometheus-client appends it)."""
    return CounterMetricFamily(PREFIX + name, doc, labels=list(labels))


def one_hot(name: str, doc: str, label: str, values: Iterable[str], current: str | None,
            extra: Mapping[str, str] | None = None) -> GaugeMetricFamily:
    """One series per possible value, 1 for the current one (Prometheus' "enum" idiom)."""
    family = GaugeMetricFamily(PREFIX + name, doc, labels=[*(extra or {}), label])
    for value in values:
        family.add_metric([*(extra or {}).values(), value], 1.0 if value == current else 0.0)
    return family


def timestamp(text: str | None) -> float | None:
    """An ISO time as a Unix time; None when absent or unreadable."""
    if not text:
        return None
    try:
        return parse_iso(text).timestamp()
    except (ValueError, OverflowError):
        return None


def _present(families: Iterable[Metric]) -> list[Metric]:
    return [f for f in families if f.samples]


# -- host.json, usage.json --------------------------------------------------------------------


def host(doc: HostDocument) -> list[Metric]:
    """The host's state (one series per state), heartbeat, DNS, wake schedule, alarm."""
    out: list[Metric] = [
        one_hot("host_state", "The host state machine's state (1 for the current one).",
                "state", HOST_STATES, doc.state),
        gauge("host_state_since_timestamp_seconds", "When the host entered its current state.",
              timestamp(doc.since)),
        gauge("host_alarm", "1 while the host is lost without having said so.",
              1.0 if doc.alarm else 0.0),
    ]
    beat = doc.last_heartbeat or {}
    if beat:
        out.append(gauge("heartbeat_ok", "Whether the last health poll of the host answered.",
                         1.0 if beat.get("ok") else 0.0))
    if beat.get("ok") and isinstance(beat.get("latency_ms"), int | float):
        out.append(gauge("heartbeat_latency_seconds", "The last good health poll's round trip.",
                         beat["latency_ms"] / 1000))
    target = doc.dns.get("target")
    if target is not None:
        out.append(one_hot("dns_target", "Where the failover name points (1 for the current "
                                         "target).", "target", ("host", "pi"), target))
        out.append(gauge("dns_applied", "1 when the DNS backend holds the desired record.",
                         1.0 if doc.dns.get("applied") else 0.0))
    if doc.next_wake is not None:
        out.append(gauge("next_wake_timestamp_seconds", "The next scheduled wake of the host.",
                         timestamp(doc.next_wake.get("at"))))
    if doc.power is not None and doc.power.get("state") is not None:
        out.append(one_hot("host_power_state", "What the host's plug says of it (hung: "
                                               "unreachable but drawing working power).",
                           "state", HOST_POWER_STATES, doc.power["state"]))
    return _present(out)


def usage(doc: UsageDocument) -> list[Metric]:
    """Wakes by reason (this month), failovers (today), hours online and kWh saved."""
    wakes = counter("wakes", "Wakes of the host by reason in the current month (resets on "
                             "the 1st).", ["reason"])
    month = doc.month.wakes if doc.month is not None else {}
    for reason in sorted({*WAKE_REASONS, *month}):
        wakes.add_metric([reason], float(month.get(reason, 0)))
    failovers = counter("failovers", "DNS failovers from the host to the Pi today, by the "
                                     "state the host left online for (resets at midnight).",
                        ["to"])
    counts = {"going_offline": 0, "unreachable": 0, "offline": 0, "waking": 0}
    for before, after in zip(doc.today, doc.today[1:], strict=False):
        if before.state == "online" and after.state != "online":
            counts[after.state] = counts.get(after.state, 0) + 1
    for state, count in counts.items():
        failovers.add_metric([state], float(count))
    out: list[Metric] = [wakes, failovers]
    today = doc.days[-1] if doc.days else None
    if today is not None:
        out.append(gauge("host_online_hours_today", "Hours the host was online today.",
                         today.hours_online))
    if doc.month is not None and doc.month.saved_kwh is not None:
        out.append(gauge("saved_kwh_month", "kWh saved this month against an always-on host.",
                         doc.month.saved_kwh))
    return _present(out)


# -- power.json ---------------------------------------------------------------------------------


def power(doc: PowerDocument) -> list[Metric]:
    """Per plug: reachable, live watts (only while reachable), energy counters."""
    up = labelled("plug_up", "1 while the plug answers.", "plug", "role")
    watts = labelled("plug_power_watts", "The plug's live draw (absent while it does not "
                                         "answer).", "plug", "role")
    energy = counter("plug_energy_kwh", "kWh the plug measured this month (resets on the "
                                        "1st): use increase().", ["plug", "role"])
    today = labelled("plug_energy_today_kwh", "kWh the plug measured today.", "plug", "role")
    seen = labelled("plug_last_seen_timestamp_seconds", "When the plug last answered.", "plug",
                    "role")
    for plug in doc.plugs:
        labels = [plug.name, plug.role]
        ok = plug.health == "ok"
        up.add_metric(labels, 1.0 if ok else 0.0)
        if ok and plug.live_w is not None:
            watts.add_metric(labels, plug.live_w)
        if plug.month_kwh is not None:
            energy.add_metric(labels, plug.month_kwh)
        if plug.today_kwh is not None:
            today.add_metric(labels, plug.today_kwh)
        if (at := timestamp(plug.last_seen)) is not None:
            seen.add_metric(labels, at)
    return _present([up, watts, energy, today, seen])


# -- inbox.json ---------------------------------------------------------------------------------


def inbox(doc: InboxDocument, now: float) -> list[Metric]:
    """What waits (files, bytes, the oldest one's age), what is in flight, what was delivered."""
    pending = doc.pending
    out: list[Metric] = [
        gauge("inbox_pending_files", "Files waiting in the Pi's inbox (in flight included).",
              pending.files),
        gauge("inbox_pending_bytes", "Bytes waiting in the Pi's inbox.", pending.bytes),
        gauge("inbox_ready_files", "Waiting files that have settled and may go.",
              pending.ready_files),
        gauge("inbox_in_flight_files", "Files being sent to the host now.", len(doc.in_flight)),
        gauge("inbox_rejected_files", "Files the host refused (named in inbox.json).",
              len(doc.rejected)),
    ]
    oldest = timestamp(pending.oldest)
    if oldest is not None and pending.files:
        out.append(gauge("inbox_oldest_age_seconds", "How long the oldest waiting file has "
                                                     "waited.", max(0.0, now - oldest)))
    files = counter("inbox_delivered_files", "Files delivered to the host since the inbox "
                                             "daemon started.")
    files.add_metric([], float(doc.delivered.files))
    size = counter("inbox_delivered_bytes", "Bytes delivered to the host since the inbox "
                                            "daemon started.")
    size.add_metric([], float(doc.delivered.bytes))
    out += [files, size]
    if doc.last_flush is not None:
        out.append(gauge("inbox_last_flush_timestamp_seconds", "When the last flush to the host "
                                                               "ended.",
                         timestamp(doc.last_flush.get("at"))))
    return _present(out)


# -- control.json -------------------------------------------------------------------------------


def control(doc: ControlDocument) -> list[Metric]:
    """Mode (safe state), the battery, the plan in force and the write budget."""
    safe = doc.mode != "following"
    out: list[Metric] = [
        one_hot("control_mode", "The control daemon's mode (1 for the current one).", "mode",
                CONTROL_MODES, doc.mode),
        gauge("control_safe_state", "1 while the devices are held in the safe state.",
              1.0 if safe else 0.0),
        gauge("control_alarms", "Open alarms of the control daemon.", len(doc.alarms)),
        gauge("control_writes_today", "Device writes today.", doc.writes_today),
        gauge("control_write_budget", "Device writes allowed per day.", doc.write_budget),
    ]
    if safe and doc.reason:
        out.append(gauge("control_safe_reason", "Why the safe state holds (1, by reason).", 1.0,
                         {"reason": doc.reason}))
    back = doc.readback
    if back is not None:
        out.append(gauge("battery_soc_percent", "The battery's state of charge, read back.",
                         back.soc_pct))
        out.append(gauge("battery_power_watts", "Battery power read back (+ charging).",
                         back.battery_w))
        out.append(gauge("grid_power_watts", "Grid power read back (+ import).", back.grid_w))
    if doc.plan is not None:
        out.append(gauge("plan_valid_until_timestamp_seconds", "When the plan in force expires.",
                         timestamp(doc.plan.valid_until)))
    slot = doc.slot or {}
    if isinstance(slot.get("power_w"), int | float):
        out.append(gauge("plan_slot_power_watts", "The battery power the current slot asks.",
                         slot["power_w"]))
    if isinstance(slot.get("soc_target"), int | float):
        out.append(gauge("plan_slot_soc_target_percent", "The current slot's SoC target.",
                         slot["soc_target"]))
    return _present(out)


# -- pi.json, pihole.json -----------------------------------------------------------------------


def pi(doc: PiDocument) -> list[Metric]:
    """The Pi's load, memory, temperature, disk and whether its daemons keep their files fresh."""
    load = labelled("pi_load", "The Pi's load average.", "period")
    for period, value in zip(("1m", "5m", "15m"), doc.load, strict=False):
        load.add_metric([period], value)
    memory, disk = doc.memory or {}, doc.disk or {}
    out: list[Metric] = [
        load,
        gauge("pi_cpus", "CPUs of the Pi.", doc.cpus),
        gauge("pi_uptime_seconds", "The Pi's uptime.", doc.uptime_s),
        gauge("pi_temperature_celsius", "The Pi's CPU temperature.", doc.temperature_c),
        gauge("pi_memory_total_bytes", "The Pi's memory.", memory.get("total_bytes")),
        gauge("pi_memory_available_bytes", "Memory available to new work.",
              memory.get("available_bytes")),
        gauge("pi_disk_total_bytes", "Size of the state_dir's file system.",
              disk.get("total_bytes")),
        gauge("pi_disk_free_bytes", "Free space on the state_dir's file system.",
              disk.get("free_bytes")),
    ]
    running = labelled("daemon_running", "1 while a daemon keeps its public file fresh.",
                       "daemon")
    for name, info in sorted(doc.daemons.items()):
        if info.get("running") is not None:
            running.add_metric([name], 1.0 if info["running"] else 0.0)
    free = labelled("share_free_bytes", "Free space of an SMB folder's file system.", "share")
    for name, share in sorted(doc.shares.items()):
        if (space := _number(share.get("free_bytes"))) is not None:
            free.add_metric([name], space)
    out += [running, free, *_backup(doc.backup)]
    return _present(out)


def _backup(backup: Mapping[str, Any] | None) -> list[Metric]:
    """The Pi's own backup to the host: when the last good one was, its size, failing now."""
    if not backup:
        return []
    last = backup.get("last_ok") or {}
    return [gauge("backup_last_ok_timestamp_seconds", "When the last backup reached the host.",
                  timestamp(last.get("at"))),
            gauge("backup_last_ok_bytes", "The last good backup's size.",
                  _number(last.get("bytes"))),
            gauge("backup_failing", "1 while the last backup attempt failed.",
                  1.0 if backup.get("last_error") else 0.0),
            gauge("backup_next_due_timestamp_seconds", "When the next backup is due.",
                  timestamp(backup.get("next_due")))]


def pihole(doc: PiholeDocument) -> list[Metric]:
    """Pi-hole's headline: queries and blocked over its last 24 h, active clients."""
    out: list[Metric] = [gauge("pihole_up", "1 when Pi-hole's API answered.",
                               1.0 if doc.ok else 0.0)]
    queries, clients = doc.queries or {}, doc.clients or {}
    if doc.ok:
        out += [gauge("pihole_queries_24h", "DNS queries Pi-hole answered in its last 24 h.",
                      _number(queries.get("total"))),
                gauge("pihole_blocked_24h", "Of those, blocked.", _number(queries.get("blocked"))),
                gauge("pihole_clients_active", "Clients seen by Pi-hole.",
                      _number(clients.get("active")))]
    return _present(out)


# -- nodes.json (raw JSON, read tolerantly) -------------------------------------------------------


def nodes(doc: Mapping[str, Any]) -> list[Metric]:
    """Each node's state and last seen; its readings only while it is online."""
    state = labelled("node_state", "An ESP32 node's state (1 for the current one).", "hwid",
                     "name", "state")
    seen = labelled("node_last_seen_timestamp_seconds", "When the node was last heard.", "hwid",
                    "name")
    reading = labelled("node_reading", "A node's reading (booleans as 0/1), while it is online.",
                       "hwid", "name", "reading", "unit")
    for node in _nodes(doc):
        hwid, name = str(node["hwid"]), str(node.get("name") or node["hwid"])
        current = node.get("state")
        for known in NODE_STATES:
            state.add_metric([hwid, name, known], 1.0 if known == current else 0.0)
        if (at := timestamp(node.get("last_seen"))) is not None:
            seen.add_metric([hwid, name], at)
        readings = node.get("readings")
        if current != "online" or not isinstance(readings, dict):
            continue
        for key, entry in sorted(readings.items()):
            value: Any = entry.get("value") if isinstance(entry, dict) else None
            if isinstance(value, bool | int | float):
                reading.add_metric([hwid, name, str(key), str(entry.get("unit") or "")],
                                   float(value))
    return _present([state, seen, reading])


def _nodes(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    found = doc.get("nodes")
    for node in found if isinstance(found, list) else ():
        if isinstance(node, dict) and isinstance(node.get("hwid"), str):
            yield node


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
