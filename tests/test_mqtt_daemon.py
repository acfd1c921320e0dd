"""The mqtt daemon against a real Mosquitto (password file, ACL): discovery, changes, restarts,
a refused login, the last will, and the Wake host button through the real api daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest

from handshake import documents
from handshake.documents import MqttDocument
from handshake.errors import ConfigError
from handshake.util import atomic
from handshake.util.timeutil import iso
from pi import config as pi_config
from pi.mqtt import daemon
from tests.e2e import spawn, stop, wait_http
from tests.helpers import pi_toml, write_secrets
from tests.mosquitto import Broker, Link, Received, make_tls, subscriber, until

FIXTURES = Path(__file__).parent / "fixtures" / "dashboard"
HOSTNAME = socket.gethostname()
PREFIX = "edgepair/testpi"
NODE = f"edgepair_{HOSTNAME.lower()}".replace("-", "_").replace(".", "_")
PLUG_POWER = f"{PREFIX}/plug/nas/power_w"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "RECONNECT_BASE_S", 0.05)
    monkeypatch.setattr(daemon, "RECONNECT_MAX_S", 0.4)


def site(tmp_path: Path, broker: Broker, *, password: str = "pi-secret", mqtt_extra: str = "",
         api_extra: str = "") -> pi_config.PiConfig:
    path = pi_toml(tmp_path, api_extra=api_extra, extra=f"""
[mqtt]
host = "127.0.0.1"
port = {broker.port}
username = "edgepair"
topic_prefix = "{PREFIX}"
refresh_s = 0.5
{mqtt_extra}
""")
    write_secrets(tmp_path / "secrets.toml", extra=f'mqtt_password = "{password}"\n')
    config = pi_config.load(path)
    config.public_dir.mkdir(parents=True, exist_ok=True)
    for name in ("power", "control", "inbox"):
        write_doc(config, name, fixture(name))
    write_doc(config, "host", {"schema": "edgepair.host/1", "interval_s": 30, "state": "offline",
                               "last_heartbeat": {"ok": False, "latency_ms": None}})
    return config


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc


def write_doc(config: pi_config.PiConfig, name: str, doc: dict[str, Any]) -> None:
    """As the daemons publish: atomically, freshly generated."""
    doc = {**doc, "generated_at": iso(time.time())}
    atomic.write_bytes(config.public_dir / f"{name}.json", json.dumps(doc).encode())


@contextlib.asynccontextmanager
async def running(config: pi_config.PiConfig) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(daemon.run(config, ready=lambda: None, kick=lambda name: None))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def configs(received: Received) -> dict[str, dict[str, Any]]:
    return {t: json.loads(p) for t, p in received.latest().items()
            if t.startswith("homeassistant/") and p}


async def test_discovery_configs_carry_what_home_assistant_requires(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker)
    async with subscriber(broker, "homeassistant/#", f"{PREFIX}/#") as got, running(config):
        await until(lambda: got.latest().get(PLUG_POWER) == b"3.8", what="the plug's watts")
        await until(lambda: all(c.get("state_topic", PREFIX) in got.latest()
                                for c in configs(got).values()), what="every state")
        found = configs(got)
        for topic, payload in found.items():
            component, node, _object_id, last = topic.split("/")[1:]
            assert (node, last) == (NODE, "config")
            assert payload["unique_id"].startswith(f"{NODE}_")
            assert payload["device"]["identifiers"] == [NODE]
            assert next(a["topic"] for a in payload["availability"]) == f"{PREFIX}/status"
            assert payload["availability_mode"] == "all"
            if component != "button":
                assert payload["state_topic"].startswith(f"{PREFIX}/")
                assert payload["state_topic"] in got.latest(), f"{topic}: no state"
        assert len({p["unique_id"] for p in found.values()}) == len(found)
        energy = found[f"homeassistant/sensor/{NODE}/plug_nas_energy_today/config"]
        assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == \
            ("energy", "total_increasing", "kWh")
        assert got.latest()[energy["state_topic"]] == b"0.412"
        online = found[f"homeassistant/binary_sensor/{NODE}/host_online/config"]
        assert online["device_class"] == "connectivity"
        assert got.latest()[online["state_topic"]] == b"OFF"
        safe = found[f"homeassistant/binary_sensor/{NODE}/safe_state/config"]
        assert safe["device_class"] == "problem"
        assert got.latest()[safe["state_topic"]] == b"OFF"  # the fixture follows a plan
        assert got.latest()[f"{PREFIX}/control/soc_pct"] == b"54"
        assert got.latest()[f"{PREFIX}/inbox/pending_files"] == b"3"
        assert got.latest()[f"{PREFIX}/status"] == b"online"
        assert got.latest()[f"{PREFIX}/power/available"] == b"online"
        assert f"homeassistant/button/{NODE}/wake_host/config" not in found  # allow_wake is off
        path = config.public_dir / "mqtt.json"
        await until(lambda: (doc := documents.read_or_none(path, MqttDocument)) is not None
                    and doc.entities == len(found))
        status = documents.read(path, MqttDocument)
        assert status is not None
        assert (status.connected, status.broker, status.connects) == \
            (True, f"127.0.0.1:{broker.port}", 1)
        # Everything is retained: a Home Assistant that starts later gets all of it at once.
        async with subscriber(broker, "homeassistant/#", f"{PREFIX}/#") as later:
            await until(lambda: later.latest() == got.latest(), timeout=5)
            assert all(retained for *_, retained in later.messages)


async def test_a_change_reaches_a_subscriber_within_a_second_and_only_the_change(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker)
    async with subscriber(broker, "homeassistant/#", f"{PREFIX}/#") as got, running(config):
        await until(lambda: got.latest().get(PLUG_POWER) == b"3.8")
        await asyncio.sleep(0.7)  # past one refresh: nothing changed, nothing is sent again
        before = len(got.messages)
        assert got.on(PLUG_POWER) == [b"3.8"]
        power = fixture("power")
        power["plugs"][0]["live_w"] = 41.5
        written = time.monotonic()
        write_doc(config, "power", power)
        await until(lambda: got.latest().get(PLUG_POWER) == b"41.5", timeout=5)
        arrived = next(t for t, topic, p, _ in got.messages if topic == PLUG_POWER and p == b"41.5")
        assert arrived - written < 1.0
        await asyncio.sleep(0.2)
        assert [t for _, t, _, _ in got.messages[before:]] == [PLUG_POWER]


async def test_a_stale_file_makes_its_entities_unavailable_and_a_gone_plug_is_removed(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker)
    async with subscriber(broker, "homeassistant/#", f"{PREFIX}/#") as got, running(config):
        await until(lambda: got.latest().get(f"{PREFIX}/inbox/available") == b"online")
        inbox = fixture("inbox") | {"generated_at": iso(time.time() - 3600)}
        atomic.write_bytes(config.public_dir / "inbox.json", json.dumps(inbox).encode())
        await until(lambda: got.latest().get(f"{PREFIX}/inbox/available") == b"offline", timeout=5)
        power = fixture("power")
        power["plugs"] = [p for p in power["plugs"] if p["name"] != "nas"]
        write_doc(config, "power", power)
        topic = f"homeassistant/sensor/{NODE}/plug_nas_power/config"
        await until(lambda: got.latest().get(topic) == b"", timeout=5, what="the plug's config cleared")
        assert got.latest()[PLUG_POWER] == b""


async def test_what_went_away_while_the_daemon_was_stopped_is_cleared_at_its_next_start(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker)
    config_topic = f"homeassistant/sensor/{NODE}/plug_printer_power/config"
    saved = config.private_dir / daemon.TOPICS_FILE
    async with running(config), subscriber(broker, "homeassistant/#") as got:
        await until(lambda: config_topic in got.latest() and saved.exists())
    power = fixture("power")
    power["plugs"] = [p for p in power["plugs"] if p["name"] != "printer"]
    write_doc(config, "power", power)  # while no daemon runs
    async with running(config), subscriber(broker, "homeassistant/#") as again:
        await until(lambda: again.latest().get(config_topic) == b"", timeout=5,
                    what="the printer's config cleared")
        assert json.loads(again.latest()[f"homeassistant/sensor/{NODE}/plug_nas_power/config"])
        # Written after the broker acknowledged (a stop in between only clears it twice).
        await until(lambda: config_topic not in json.loads(saved.read_text())["topics"])
    topics = json.loads(saved.read_text())["topics"]
    assert f"{PREFIX}/plug/nas/power_w" in topics


async def test_a_restarted_broker_gets_everything_again_after_a_capped_backoff(
        tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pi.mqtt")
    pauses: list[float] = []
    pause = daemon.MqttService._pause

    async def recorded(self: daemon.MqttService, delay: float, kick: Any) -> None:
        pauses.append(delay)
        await pause(self, delay, kick)

    monkeypatch.setattr(daemon.MqttService, "_pause", recorded)
    config = site(tmp_path, broker)
    async with running(config) as task:
        async with subscriber(broker, "homeassistant/#", f"{PREFIX}/#") as got:
            await until(lambda: got.latest().get(PLUG_POWER) == b"3.8")
            before = len(configs(got))
        broker.stop()  # no persistence: every retained message is gone
        await until(lambda: len(pauses) >= 5, timeout=10, what="five reconnect attempts")
        broker.start()
        async with subscriber(broker, "homeassistant/#", f"{PREFIX}/#") as again:
            await until(lambda: again.latest().get(PLUG_POWER) == b"3.8", timeout=5)
            await until(lambda: len(configs(again)) == before, timeout=5)
            assert again.latest()[f"{PREFIX}/status"] == b"online"
        assert not task.done()
    assert pauses[:4] == [0.05, 0.1, 0.2, 0.4]
    assert max(pauses) == 0.4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "broker" in r.message]
    assert len(warnings) == 1, [r.message for r in warnings]  # lost it; the retries are DEBUG
    assert any("connected to" in r.message and "again" in r.message for r in caplog.records)


async def test_a_wrong_password_is_one_clear_error_and_retries(
        tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pi.mqtt")
    config = site(tmp_path, broker, password="wrong")
    async with running(config) as task:
        await until(lambda: sum("still failing" in r.message for r in caplog.records) >= 3,
                    timeout=10, what="three quiet retries")
        assert not task.done()
        status = documents.read(config.public_dir / "mqtt.json", MqttDocument)
        assert status is not None
        assert not status.connected
        assert status.last_error is not None
        assert status.last_error.startswith("login refused")
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "refused the login of edgepair" in errors[0].message
    assert "mqtt_password" in errors[0].message
    assert str(config.pi.secrets_file) in errors[0].message


async def test_the_last_will_says_offline_when_the_link_dies_and_online_comes_back(
        tmp_path: Path, broker: Broker) -> None:
    link = await Link(broker).start()
    config = site(tmp_path, broker)
    config = msgspec.structs.replace(
        config, mqtt=msgspec.structs.replace(config.mqtt, port=link.port))
    status = f"{PREFIX}/status"
    try:
        async with subscriber(broker, status) as got:
            async with running(config):
                await until(lambda: got.on(status) == [b"online"])
                link.cut()  # the broker hears nothing more from the Pi: it sends the last will
                await until(lambda: got.on(status)[1:2] == [b"offline"], timeout=5,
                            what="the last will")
                await until(lambda: got.on(status)[-1:] == [b"online"], timeout=5,
                            what=lambda: got.on(status))
            await until(lambda: got.on(status)[-1:] == [b"offline"], timeout=5,
                        what="a clean stop says offline")
    finally:
        await link.close()


async def test_wake_button_goes_through_the_api_daemons_rate_limit_and_the_acl(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker, mqtt_extra="allow_wake = true",
                  api_extra="anonymous_wake_per_min = 2")
    api = spawn("pi", "run", "api", "--config", str(config.file), log=tmp_path / "api.log")
    result = f"{PREFIX}/host/wake/result"
    try:
        await wait_http(f"http://127.0.0.1:{config.api.listen.port}/api/v1/health")
        async with subscriber(broker, "homeassistant/#", result) as got, running(config):
            button = f"homeassistant/button/{NODE}/wake_host/config"
            await until(lambda: button in got.latest())
            assert json.loads(got.latest()[button])["command_topic"] == f"{PREFIX}/host/wake"
            await asyncio.sleep(0.2)  # the daemon's subscription is in place after its configs
            for user in ("viewer", "homeassistant"):  # a viewer may not press: the ACL drops it
                async with aiomqtt.Client("127.0.0.1", broker.port, username=user,
                                          password=broker.users[user]) as press:
                    for _ in range(3):
                        await press.publish(f"{PREFIX}/host/wake", b"PRESS", qos=1)
            await until(lambda: len(got.on(result)) == 3, timeout=10)
            statuses = [json.loads(p)["status"] for p in got.on(result)]
            assert all(s in (200, 202) for s in statuses[:2]), statuses
            assert statuses[2] == 429, statuses  # burst of 2: the third is the api's 429
            await asyncio.sleep(0.3)
            assert len(got.on(result)) == 3  # none from the viewer
    finally:
        stop(api)


async def test_the_real_cli_runs_the_daemon_and_a_sigterm_says_offline(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker)
    status = f"{PREFIX}/status"
    async with subscriber(broker, status, f"{PREFIX}/host/state") as got:
        proc = spawn("pi", "run", "mqtt", "--config", str(config.file), log=tmp_path / "mqtt.log")
        try:
            await until(lambda: got.latest().get(f"{PREFIX}/host/state") == b"offline",
                        timeout=15, what="the daemon's first publish")
        finally:
            code = stop(proc)
        assert code == 0, (tmp_path / "mqtt.log").read_text()
        await until(lambda: got.on(status)[-1:] == [b"offline"], timeout=5)
    assert "Traceback" not in (tmp_path / "mqtt.log").read_text()


async def test_tls_to_the_broker_with_its_own_ca(tmp_path: Path) -> None:
    ca, listener = make_tls(tmp_path / "tls")
    broker = Broker(tmp_path, extra=listener).start()  # the listener above speaks TLS only
    try:
        config = site(tmp_path, broker, mqtt_extra=f'tls = true\nca_file = "{ca}"')
        async with running(config) as task:
            path = config.public_dir / "mqtt.json"
            await until(lambda: (doc := documents.read_or_none(path, MqttDocument)) is not None
                        and doc.connected and doc.entities > 0, timeout=10)
            assert not task.done()
        # Without the CA the broker's certificate is refused: an error, retried, no crash.
        config = site(tmp_path, broker, mqtt_extra="tls = true")
        async with running(config) as task:
            await until(lambda: (doc := documents.read_or_none(path, MqttDocument)) is not None
                        and doc.last_error is not None and "CERTIFICATE" in doc.last_error.upper(),
                        timeout=10)
            assert not task.done()
    finally:
        broker.stop()


async def test_a_username_without_its_password_is_a_config_error(
        tmp_path: Path, broker: Broker) -> None:
    config = site(tmp_path, broker)
    write_secrets(tmp_path / "secrets.toml")  # no mqtt_password
    with pytest.raises(ConfigError) as caught:
        await daemon.run(config, ready=lambda: None, kick=lambda name: None)
    assert "mqtt_password: required when [mqtt] username is set" in caught.value.problems[0]
