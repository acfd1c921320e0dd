"""/metrics: the pure document → families functions and the collector over real files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from handshake import documents
from handshake.documents import (
    ControlDocument,
    HostDocument,
    PowerDocument,
    PowerPlug,
    UsageBand,
    UsageDocument,
)
from handshake.util.timeutil import iso
from pi.metrics import families
from pi.metrics.collector import Metrics
from tests.fixtures import dashboard

NOW = 1_800_000_000.0


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (the real parser)."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def names(text: bytes) -> set[str]:
    return {name for name, _ in samples(text)}


def node_document(now: float, state: str = "online") -> dict[str, Any]:
    return {"schema": "edgepair.nodes/1", "generated_at": iso(now), "nodes": [
        {"hwid": "a1b2", "name": "garage", "role": "sensor", "state": state,
         "last_seen": iso(now - 3), "firmware": "0.1", "capabilities": ["temp"],
         "readings": {"temperature": {"value": 21.5, "unit": "°C", "at": iso(now - 3)},
                      "door": {"value": True, "unit": None, "at": iso(now - 3)},
                      "broken": {"value": "n/a", "unit": None, "at": iso(now)}},
         "next_job": None},
        {"name": "no hwid: skipped"}, "not even an object"]}


def test_the_host_state_is_one_series_per_state_with_one_set() -> None:
    doc = HostDocument(generated_at=iso(NOW) or "", state="unreachable", since=iso(NOW - 60),
                       last_heartbeat={"ok": False, "latency_ms": None},
                       dns={"target": "pi", "applied": True}, alarm={"message": "lost"})
    text = _render(families.host(doc))
    got = samples(text)
    states = {labels[0][1]: v for (name, labels), v in got.items() if name == "edgepair_host_state"}
    assert states == {"online": 0, "going_offline": 0, "offline": 0, "waking": 0,
                      "unreachable": 1}
    assert got[("edgepair_host_alarm", ())] == 1
    assert got[("edgepair_dns_target", (("target", "pi"),))] == 1
    assert got[("edgepair_heartbeat_ok", ())] == 0
    assert "edgepair_heartbeat_latency_seconds" not in names(text)  # a failed poll has none


def test_a_plug_that_does_not_answer_exports_no_watts_but_keeps_its_energy_counter() -> None:
    doc = PowerDocument(generated_at=iso(NOW) or "", plugs=[
        PowerPlug(name="nas", role="host", health="ok", live_w=31.5, month_kwh=12.5),
        PowerPlug(name="tv", role="other", health="unreachable", live_w=80.0, month_kwh=3.0)])
    got = samples(_render(families.power(doc)))
    assert got[("edgepair_plug_power_watts", (("plug", "nas"), ("role", "host")))] == 31.5
    assert ("edgepair_plug_power_watts", (("plug", "tv"), ("role", "other"))) not in got
    assert got[("edgepair_plug_up", (("plug", "tv"), ("role", "other")))] == 0
    assert got[("edgepair_plug_energy_kwh_total", (("plug", "tv"), ("role", "other")))] == 3.0


def test_failovers_count_todays_transitions_out_of_online_by_where_the_host_went() -> None:
    bands = [UsageBand(start="a", end="b", state=s) for s in
             ("offline", "online", "going_offline", "offline", "online", "unreachable", "online")]
    doc = UsageDocument(generated_at=iso(NOW) or "", today=bands)
    got = samples(_render(families.usage(doc)))
    assert got[("edgepair_failovers_total", (("to", "going_offline"),))] == 1
    assert got[("edgepair_failovers_total", (("to", "unreachable"),))] == 1
    # Every wake reason has a series from the start (increase() needs the zero).
    assert got[("edgepair_wakes_total", (("reason", "demand:dns"),))] == 0


def test_control_in_the_safe_state_says_why() -> None:
    doc = ControlDocument(generated_at=iso(NOW) or "", mode="safe", reason="plan_expired")
    got = samples(_render(families.control(doc)))
    assert got[("edgepair_control_safe_state", ())] == 1
    assert got[("edgepair_control_safe_reason", (("reason", "plan_expired"),))] == 1
    assert got[("edgepair_control_mode", (("mode", "safe"),))] == 1


def test_node_readings_only_while_online_and_odd_entries_are_skipped() -> None:
    got = samples(_render(families.nodes(node_document(NOW))))
    key = (("hwid", "a1b2"), ("name", "garage"))
    assert got[("edgepair_node_reading", (*key, ("reading", "temperature"), ("unit", "°C")))] == 21.5
    assert got[("edgepair_node_reading", (*key, ("reading", "door"), ("unit", "")))] == 1
    assert not any(dict(labels).get("reading") == "broken" for _, labels in got)
    assert got[("edgepair_node_state", (*key, ("state", "online")))] == 1
    offline = samples(_render(families.nodes(node_document(NOW, state="offline"))))
    assert "edgepair_node_reading" not in {name for name, _ in offline}
    assert offline[("edgepair_node_state", (*key, ("state", "offline")))] == 1


def test_a_stale_document_exports_its_age_and_no_values(tmp_path: Path) -> None:
    clock = [time.time()]
    dashboard.write(tmp_path, ("power", "inbox"), now=clock[0])
    metrics = Metrics(tmp_path, clock=lambda: clock[0])
    fresh = samples(metrics.render())
    assert fresh[("edgepair_plug_power_watts", (("plug", "nas"), ("role", "host")))] == 3.8
    assert fresh[("edgepair_document_stale", (("file", "power.json"),))] == 0
    clock[0] += 16  # power.json: stale_after_s 15; inbox.json: 30
    stale = samples(metrics.render())
    assert stale[("edgepair_document_stale", (("file", "power.json"),))] == 1
    assert stale[("edgepair_document_age_seconds", (("file", "power.json"),))] >= 16
    assert not any(name.startswith("edgepair_plug_") for name, _ in stale)
    assert stale[("edgepair_inbox_pending_files", ())] == 3  # still fresh


def test_a_broken_file_is_unreadable_not_an_error_and_a_rewrite_is_seen(tmp_path: Path) -> None:
    now = time.time()
    dashboard.write(tmp_path, ("power",), now=now)
    (tmp_path / "control.json").write_text('{"schema": "edgepair.control/1"')
    (tmp_path / "nodes.json").write_bytes(msgspec.json.encode(node_document(now)))
    metrics = Metrics(tmp_path, clock=lambda: now)
    got = samples(metrics.render())
    assert got[("edgepair_document_readable", (("file", "control.json"),))] == 0
    assert got[("edgepair_document_readable", (("file", "nodes.json"),))] == 1
    doc = dashboard.load("power", now)
    doc["plugs"][0]["live_w"] = 42.0
    path = tmp_path / "power.json"
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime for sure
    got = samples(metrics.render())
    assert got[("edgepair_plug_power_watts", (("plug", "nas"), ("role", "host")))] == 42.0


def test_an_unchanged_site_reuses_its_text_within_a_second(tmp_path: Path) -> None:
    now = [time.time()]
    dashboard.write(tmp_path, ("power",), now=now[0])
    metrics = Metrics(tmp_path, clock=lambda: now[0])
    first = metrics.render()
    assert metrics.render() is first
    now[0] += 1.5
    assert metrics.render() is not first


def _render(found: list[Any]) -> bytes:
    """Families through prometheus-client's exposition, as the daemon serves them."""
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

    class One:
        def collect(self) -> Any:
            return iter(found)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    return generate_latest(registry)


def test_every_public_document_type_with_metrics_is_read() -> None:
    from pi.metrics.collector import _BUILDERS  # noqa: PLC0415

    assert {documents.FILES[kind] for kind in _BUILDERS} == {
        "host.json", "usage.json", "power.json", "inbox.json", "control.json", "pi.json",
        "pihole.json"}


def test_the_pis_backup_and_shares_are_exported() -> None:
    doc = documents.PiDocument(
        generated_at=iso(NOW) or "", shares={"inbox": {"path": "/srv", "free_bytes": 5e9},
                                            "share": {"path": "/x", "error": "not found"}},
        backup={"enabled": True, "last_ok": {"at": iso(NOW - 3600), "bytes": 12345},
                "last_error": {"at": iso(NOW), "message": "host refused"},
                "next_due": iso(NOW + 600)})
    got = samples(_render(families.pi(doc)))
    assert got[("edgepair_share_free_bytes", (("share", "inbox"),))] == 5e9
    assert ("edgepair_share_free_bytes", (("share", "share"),)) not in got
    assert got[("edgepair_backup_last_ok_timestamp_seconds", ())] == NOW - 3600
    assert got[("edgepair_backup_last_ok_bytes", ())] == 12345
    assert got[("edgepair_backup_failing", ())] == 1
    assert got[("edgepair_backup_next_due_timestamp_seconds", ())] == NOW + 600
