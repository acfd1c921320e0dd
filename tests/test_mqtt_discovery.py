"""The pure part of the mqtt daemon: documents → entities → retained topics, and the difference
to publish; every discovery payload is checked against Home Assistant's documented schema."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from handshake import documents
from handshake.documents import Document
from handshake.util import atomic
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from pi.mqtt import discovery, entities, sources, wake
from pi.mqtt.discovery import Message, Names
from pi.mqtt.entities import Source
from tests.ha_discovery import problems
from tests.helpers import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "dashboard"
NAMES = Names.of(None, "homeassistant", "pi-Garage.lan", "9.9")
NOW = time.time()
NODES = {
    "schema": "edgepair.nodes/1", "generated_at": iso(NOW),
    "nodes": [
        {"hwid": "A4:CF:12:00:00:01", "name": "cellar", "role": "sensor", "state": "online",
         "last_seen": iso(NOW), "firmware": "0.3", "capabilities": ["ds18b20", "relay"],
         "readings": {"temperature": {"value": 11.25, "unit": "°C", "at": iso(NOW)},
                      "relay": {"value": True, "unit": None, "at": iso(NOW)},
                      "meter": {"value": 1234.5, "unit": "kWh", "at": iso(NOW)},
                      "label": {"value": "text is not a reading", "unit": None, "at": iso(NOW)}},
         "next_job": None},
        {"hwid": "A4:CF:12:00:00:02", "name": None, "role": None, "state": "offline",
         "last_seen": None, "firmware": "0.3", "capabilities": [], "readings": {},
         "next_job": None},
        "not a node",
    ],
}


def fixture_sources() -> dict[str, Source]:
    """Every public file edgepair writes (the dashboard's fixtures), fresh, plus nodes.json."""
    out: dict[str, Source] = {}
    for name, kind in sources.KINDS.items():
        path = FIXTURES / f"{name}.json"
        if path.exists():
            out[name] = Source(documents.decode(path.read_bytes(), kind), available=True)
    out["host"] = Source(host(state="online", next_wake={"at": "2026-01-16T06:00:00.000Z",
                                                         "source": "schedule"}), available=True)
    out["pi"] = Source(documents.convert(
        {"schema": "edgepair.pi/1", "generated_at": iso(NOW), "load": [0.42, 0.3, 0.2],
         "memory": {"total_bytes": 1000, "used_bytes": 250}, "temperature_c": 48.3,
         "disk": {"total_bytes": 200, "used_bytes": 50}}, documents.PiDocument), available=True)
    out["nodes"] = Source(NODES, available=True)
    return out


def host(**fields: Any) -> Document:
    doc = {"schema": "edgepair.host/1", "generated_at": iso(NOW), "state": "offline",
           "last_heartbeat": {"ok": True, "latency_ms": 3.25}} | fields
    return documents.convert(doc, documents.HostDocument)


def wanted(srcs: dict[str, Source], *, allow_wake: bool = True) -> dict[str, bytes]:
    listed = entities.entities(srcs, allow_wake=allow_wake)
    return discovery.retained(NAMES, listed, entities.availability(srcs))


def test_every_discovery_payload_follows_home_assistants_schema() -> None:
    topics = wanted(fixture_sources())
    configs = {t: json.loads(p) for t, p in topics.items() if t.endswith("/config")}
    components = {t.split("/")[1] for t in configs}
    assert components == {"sensor", "binary_sensor", "button"}
    found = [p for t, c in configs.items()
             for p in problems(t, c, topics.get(c.get("state_topic", "")))]
    assert found == []
    # The checker itself catches what Home Assistant would refuse.
    energy = configs["homeassistant/sensor/edgepair_pi_garage_lan/plug_nas_energy_today/config"]
    assert problems("homeassistant/sensor/x/y/config", energy | {"state_class": "measurement"})
    assert problems("homeassistant/sensor/x/y/config", energy | {"unit_of_measurement": "W"})
    assert problems("homeassistant/sensor/x/y/config", {k: v for k, v in energy.items()
                                                        if k != "state_topic"})
    assert problems("homeassistant/sensor/x/y/config", energy | {"colour": "red"})
    assert problems("homeassistant/sensor/x/y/config", energy, b"lots")


def test_one_device_per_pi_and_unique_ids_across_it() -> None:
    configs = [json.loads(p) for t, p in wanted(fixture_sources()).items() if t.endswith("/config")]
    assert {json.dumps(c["device"], sort_keys=True) for c in configs} == {json.dumps(
        {"identifiers": ["edgepair_pi_garage_lan"], "manufacturer": "edgepair",
         "model": "edgepair Pi", "name": "edgepair pi-Garage.lan", "sw_version": "9.9"},
        sort_keys=True)}
    ids = [c["unique_id"] for c in configs]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("edgepair_pi_garage_lan_") for i in ids)


def test_states_as_home_assistant_reads_them() -> None:
    topics = wanted(fixture_sources())
    prefix = "edgepair/pi-Garage.lan"
    assert topics[f"{prefix}/host/state"] == b"online"
    assert topics[f"{prefix}/host/online"] == b"ON"
    assert topics[f"{prefix}/host/heartbeat_ms"] == b"3.25"
    assert topics[f"{prefix}/host/next_wake"] == b"2026-01-16T06:00:00.000Z"
    assert topics[f"{prefix}/pi/memory_used_pct"] == b"25"
    assert topics[f"{prefix}/plug/nas/energy_month_kwh"] == b"6.874"
    assert topics[f"{prefix}/control/safe_state"] == b"OFF"
    assert topics[f"{prefix}/usage/saved_kwh_month"].replace(b".", b"").isdigit()
    assert f"{prefix}/status" not in topics  # the daemon's own: the last will, not the mapping


def test_safe_state_is_a_problem_and_the_host_offline_is_not_connected() -> None:
    srcs = fixture_sources()
    control = documents.convert(json.loads((FIXTURES / "control.json").read_text())
                                | {"mode": "safe_unverified", "reason": "device_unreachable"},
                                documents.ControlDocument)
    srcs["control"] = Source(control, available=True)
    srcs["host"] = Source(host(state="unreachable", last_heartbeat={"ok": False}), available=True)
    topics = wanted(srcs)
    prefix = "edgepair/pi-Garage.lan"
    assert topics[f"{prefix}/control/safe_state"] == b"ON"
    assert topics[f"{prefix}/control/reason"] == b"device_unreachable"
    assert topics[f"{prefix}/host/online"] == b"OFF"
    assert topics[f"{prefix}/host/heartbeat_ms"] == b"None"  # a failed probe has no latency


def test_nodes_readings_become_sensors_and_an_offline_node_is_unavailable() -> None:
    topics = wanted(fixture_sources())
    prefix = "edgepair/pi-Garage.lan"
    node = "a4_cf_12_00_00_01"
    config = "homeassistant/sensor/edgepair_pi_garage_lan/node_{}_{}/config"
    temperature = json.loads(topics[config.format(node, "temperature")])
    assert (temperature["device_class"], temperature["unit_of_measurement"]) == ("temperature", "°C")
    meter = json.loads(topics[config.format(node, "meter")])
    assert (meter["device_class"], meter["state_class"]) == ("energy", "total_increasing")
    assert topics[f"{prefix}/node/{node}/temperature"] == b"11.25"
    assert topics[f"{prefix}/node/{node}/relay"] == b"ON"
    assert f"{prefix}/node/{node}/label" not in topics  # not a number or a bool: skipped
    assert topics[f"{prefix}/node/{node}/available"] == b"online"
    assert topics[f"{prefix}/node/a4_cf_12_00_00_02/online"] == b"OFF"
    assert topics[f"{prefix}/nodes/available"] == b"online"
    srcs = fixture_sources()
    gone = NODES | {"nodes": [NODES["nodes"][0] | {"state": "offline"}]}
    srcs["nodes"] = Source(gone, available=True)
    assert wanted(srcs)[f"{prefix}/node/{node}/available"] == b"offline"  # its readings are old
    srcs["nodes"] = Source(NODES, available=False)
    assert wanted(srcs)[f"{prefix}/node/{node}/available"] == b"offline"  # nodes.json is stale


def test_button_only_with_allow_wake() -> None:
    topics = wanted(fixture_sources())
    button = json.loads(topics["homeassistant/button/edgepair_pi_garage_lan/wake_host/config"])
    assert button["command_topic"] == "edgepair/pi-Garage.lan/host/wake"
    assert button["payload_press"] == "PRESS"
    assert not any("/button/" in t for t in wanted(fixture_sources(), allow_wake=False))


def test_changes_send_only_the_difference_and_clear_what_went_away() -> None:
    before = {"a": b"1", "b": b"2", "gone": b"x"}
    after = {"a": b"1", "b": b"3", "new": b"4"}
    assert discovery.changes(before, after) == [Message("b", b"3"), Message("new", b"4"),
                                                Message("gone", b"")]
    assert discovery.changes(after, after) == []


@pytest.mark.parametrize(("value", "payload"), [
    (None, b"None"), (True, b"ON"), (False, b"OFF"), (3.0, b"3"), (0.1 + 0.2, b"0.3"),
    (float("nan"), b"None"), (12, b"12"), ("online", b"online")])
def test_state_payloads(value: object, payload: bytes) -> None:
    assert discovery.state_payload(value) == payload


def test_a_custom_topic_prefix_is_kept() -> None:
    names = Names.of("site7/pi", "ha", "x", "1")
    assert names.status == "site7/pi/status"
    assert names.config_topic(entities.entities({}, allow_wake=True)[0]) == \
        "ha/button/edgepair_x/wake_host/config"


def test_reading_a_file_fresh_stale_unusable_and_gone(tmp_path: Path) -> None:
    quiet = QuietLogger(logging.getLogger("test"))
    inbox = json.loads((FIXTURES / "inbox.json").read_text())
    atomic.write_bytes(tmp_path / "inbox.json",
                       json.dumps(inbox | {"generated_at": iso(NOW)}).encode())
    fresh = sources.read(tmp_path, "inbox", None, NOW, quiet)
    assert fresh is not None
    assert fresh.available
    stale = sources.read(tmp_path, "inbox", None, NOW + 3600, quiet)
    assert stale is not None
    assert not stale.available
    (tmp_path / "inbox.json").write_text('{"schema": "edgepair.inbox/1", "generated_')
    broken = sources.read(tmp_path, "inbox", fresh, NOW, quiet)
    assert broken == Source(fresh.document, available=False)  # kept, but not as live
    assert sources.read(tmp_path, "inbox", None, NOW, quiet) is None
    (tmp_path / "inbox.json").unlink()
    assert sources.read(tmp_path, "inbox", fresh, NOW, quiet) is None
    (tmp_path / "nodes.json").write_text(json.dumps(NODES))
    nodes = sources.read(tmp_path, "nodes", None, NOW, quiet)
    assert nodes is not None
    assert nodes.available
    (tmp_path / "nodes.json").write_text(json.dumps(NODES | {"schema": "edgepair.other/1"}))
    assert sources.read(tmp_path, "nodes", None, NOW, quiet) is None


def test_a_press_with_the_api_daemon_down_is_a_warning_not_a_crash(
        caplog: pytest.LogCaptureFixture) -> None:
    status, answer = wake.post(f"http://127.0.0.1:{free_port()}")
    assert status == 0
    assert "error" in answer
    assert any(r.levelno == logging.WARNING and "did not answer" in r.message
               for r in caplog.records)
