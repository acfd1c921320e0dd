"""The notifier against real receivers: a webhook that is down for a while and a restart in
between, ntfy's headers, a real Mosquitto, and the api daemon sending a real alarm."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import msgspec
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from handshake import documents
from handshake.documents import HostDocument
from handshake.util.timeutil import iso
from pi import config as pi_config
from pi.notify import outbox
from pi.notify.service import NotifyService
from tests.e2e import ROOT, Site, stop, wait_dns, wait_http
from tests.helpers import free_port, pi_toml, write_secrets

FAST = {"tick_s": 0.1, "retry_base_s": 0.1}
TOKEN = "s3cret-token"


async def until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


class Receiver:
    """A real HTTP receiver on loopback; ``fail`` requests are answered 503 first."""

    def __init__(self, fail: int = 0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.got: list[dict[str, Any]] = []
        self.fail = fail
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=503, text="busy")
        self.got.append({"headers": dict(request.headers), "body": body})
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def events(self) -> list[str]:
        return [json.loads(m["body"])["event"] for m in self.got]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    yield found
    await found.stop()


def notify_config(tmp_path: Path, targets: str, secrets: str = "") -> pi_config.PiConfig:
    path = pi_toml(tmp_path, extra=f"{targets}\n[notify_options]\ndebounce_s = 0\nretry_max_s = 1\n")
    write_secrets(tmp_path / "secrets.toml", extra=secrets)
    return pi_config.load(path)


def publish_host(config: pi_config.PiConfig, state: str) -> None:
    now = time.time()
    documents.publish(config.public_dir / "host.json", HostDocument(
        generated_at=iso(now) or "", interval_s=30, state=state, since=iso(now)))


async def running(service: NotifyService) -> asyncio.Task[None]:
    return asyncio.create_task(service.run())


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_alarm_waits_out_a_dead_receiver_and_a_restart_and_arrives_once(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    config = notify_config(tmp_path, f'[[notify]]\ntype = "webhook"\nname = "ha"\n'
                                     f'url = "{receiver.url}"\n',
                           secrets=f'[notify.ha]\ntoken = "{TOKEN}"\n')
    publish_host(config, "unreachable")
    caplog.set_level(logging.DEBUG, logger="pi.notify.service")
    first = NotifyService(config, **FAST)
    task = await running(first)
    # The receiver is down (connection refused): the message waits, retried with backoff.
    await until(lambda: first.outbox and first.outbox[0].attempts >= 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # the first failure; the repeats are DEBUG
    await cancel(task)
    saved = json.loads((config.private_dir / outbox.FILE).read_text())
    assert [e["event"]["event"] for e in saved["outbox"]] == ["host_unreachable"]
    assert saved["alarms"]["host"]["raised"] is True
    # Restarted, with the receiver up: delivered once, and the alarm is not raised again.
    await receiver.start()
    second = NotifyService(config, **FAST)
    task = await running(second)
    await until(lambda: receiver.got)
    message = receiver.got[0]
    body = json.loads(message["body"])
    assert body["event"] == "host_unreachable"
    assert body["severity"] == "alarm"
    assert message["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert message["headers"]["X-Edgepair-Event-Id"] == body["id"]
    await asyncio.sleep(0.5)  # several ticks: nothing more to say
    assert receiver.events() == ["host_unreachable"]
    publish_host(config, "online")
    await until(lambda: len(receiver.got) == 2)
    assert receiver.events() == ["host_unreachable", "host_back"]
    # Delivered is written down (the receiver's 2xx comes first, the rewrite right after).
    await until(lambda: json.loads((config.private_dir / outbox.FILE).read_text())["outbox"]
                == [])
    await cancel(task)


async def test_ntfy_gets_text_with_title_and_priority_headers_after_503s(tmp_path: Path) -> None:
    receiver = Receiver(fail=2)
    await receiver.start()
    try:
        config = notify_config(tmp_path, f'[[notify]]\ntype = "ntfy"\nurl = "{receiver.url}"\n'
                                         f'events = ["safe_state"]\n')
        now = time.time()
        documents.publish(config.public_dir / "control.json", documents.ControlDocument(
            generated_at=iso(now) or "", interval_s=5, mode="safe", reason="device_failed",
            detail="no answer from 127.0.0.1:502"))
        publish_host(config, "unreachable")  # not asked for by this target
        service = NotifyService(config, **FAST)
        task = await running(service)
        await until(lambda: receiver.got)
        await cancel(task)
    finally:
        await receiver.stop()
    assert len(receiver.got) == 1
    message = receiver.got[0]
    assert message["headers"]["Title"] == "Control in the safe state"
    assert message["headers"]["Priority"] == "high"
    assert b"device_failed" in message["body"]
    assert receiver.fail == 0  # both 503s were retried


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """Debian's mosquitto on a free loopback port, with a password file."""
    port = free_port()
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edgepair", "pw"],
                   check=True, capture_output=True)
    passwords.chmod(0o600)
    conf = tmp_path / "mosquitto.conf"
    # `user root`: as root, mosquitto would drop to its own user, who cannot read tmp_path.
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"password_file {passwords}\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield port
    finally:
        stop(proc)


async def test_an_mqtt_target_publishes_the_alarm_on_a_real_broker(
        tmp_path: Path, mosquitto: int) -> None:
    config = notify_config(tmp_path, f'[[notify]]\ntype = "mqtt"\nname = "broker"\n'
                                     f'url = "mqtt://127.0.0.1:{mosquitto}"\n'
                                     f'topic = "edgepair/pi/alarms"\n',
                           secrets='[notify.broker]\nusername = "edgepair"\npassword = "pw"\n')
    end = time.monotonic() + 10
    while True:  # the broker takes a moment to listen
        try:
            subscriber = aiomqtt.Client("127.0.0.1", mosquitto, username="edgepair",
                                        password="pw")
            await subscriber.__aenter__()
            break
        except aiomqtt.MqttError:
            assert time.monotonic() < end
            await asyncio.sleep(0.05)
    try:
        await subscriber.subscribe("edgepair/pi/alarms", qos=1)
        publish_host(config, "unreachable")
        task = await running(NotifyService(config, **FAST))
        async with asyncio.timeout(10):
            message = await anext(aiter(subscriber.messages))
        await cancel(task)
    finally:
        await subscriber.__aexit__(None, None, None)
    assert isinstance(message.payload, bytes)
    assert msgspec.json.decode(message.payload)["event"] == "host_unreachable"


async def test_a_wrong_mqtt_password_is_one_clear_warning_and_retries(
        tmp_path: Path, mosquitto: int, caplog: pytest.LogCaptureFixture) -> None:
    config = notify_config(tmp_path, f'[[notify]]\ntype = "mqtt"\nname = "broker"\n'
                                     f'url = "mqtt://127.0.0.1:{mosquitto}"\ntopic = "a/b"\n',
                           secrets='[notify.broker]\nusername = "edgepair"\npassword = "no"\n')
    caplog.set_level(logging.DEBUG, logger="pi.notify.service")
    publish_host(config, "unreachable")
    service = NotifyService(config, **FAST)
    task = await running(service)
    await until(lambda: service.outbox and service.outbox[0].attempts >= 3)
    await cancel(task)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "not authorized" in warnings[0].lower()
    assert f"127.0.0.1:{mosquitto}" in warnings[0]


async def test_the_api_daemon_sends_host_unreachable_and_back_while_a_target_hangs(
        tmp_path: Path, receiver: Receiver) -> None:
    """A target that accepts connections and never answers holds up neither failover nor
    the other target."""
    await receiver.start()
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)  # never accepted: every POST waits for its timeout_s
        hang_url = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
        site = Site(tmp_path, interval=0.2, extra_pi=(
            f'[[notify]]\ntype = "webhook"\nname = "hangs"\nurl = "{hang_url}"\n'
            f'timeout_s = 5\n'
            f'[[notify]]\ntype = "webhook"\nname = "ok"\nurl = "{receiver.url}"\n'
            f'[notify_options]\ndebounce_s = 0\n'))
        host, pi = site.start_host(), site.start_pi()
        try:
            await wait_http(f"{site.api}/api/v1/health")
            await until(lambda: _state(site) == "online")
            stop(host)  # lost without a word: unreachable after `fall` missed heartbeats
            lost = time.monotonic()
            await wait_dns("nas.home.arpa", site.dns_port, site.PI_ADDRESS, timeout=10)
            assert time.monotonic() - lost < 5  # failover did not wait for the hanging target
            await until(lambda: receiver.events() == ["host_unreachable"])
            host = site.start_host()
            await until(lambda: receiver.events() == ["host_unreachable", "host_back"])
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{site.api}/metrics") as response:
                text = await response.text()
        finally:
            stop(pi)
            stop(host)
    got = {(s.name, s.labels.get("target")): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    assert got[("edgepair_notify_delivered_total", "ok")] == 2
    assert got[("edgepair_notify_waiting", "ok")] == 0
    assert got[("edgepair_notify_waiting", "hangs")] == 2  # still on its first, 5 s timeout
    back = json.loads(receiver.got[1]["body"])
    assert back["message"] == "resolved: the host is online"


def _state(site: Site) -> str | None:
    try:
        data = json.loads((site.root / "pi-state" / "public" / "host.json").read_text())
    except (OSError, ValueError):
        return None
    state: str = data["state"]
    return state


async def test_messages_left_for_a_removed_target_or_past_max_age_are_dropped_not_sent(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    await receiver.start()
    config = notify_config(tmp_path, f'[[notify]]\ntype = "webhook"\nname = "ha"\n'
                                     f'url = "{receiver.url}"\n')
    now = time.time()

    def entry(target: str, ident: str, created: float) -> dict[str, Any]:
        return outbox.Entry(target, {"id": ident, "event": "disk_low", "severity": "alarm",
                                     "title": "t", "message": "m"}, created).to_json()

    outbox.write(config.private_dir, {"schema": outbox.SCHEMA, "host_state": None, "alarms": {},
                                      "outbox": [entry("gone", "a", now),
                                                 entry("ha", "old", now - 2 * 86400),
                                                 entry("ha", "fresh", now - 60)]})
    caplog.set_level(logging.INFO, logger="pi.notify.service")
    task = await running(NotifyService(config, **FAST))
    await until(lambda: receiver.got)
    await asyncio.sleep(0.3)
    await cancel(task)
    assert [json.loads(m["body"])["id"] for m in receiver.got] == ["fresh"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "dropping old" in errors[0]


async def test_notify_test_sends_one_message_per_target_and_says_which_failed(
        tmp_path: Path, receiver: Receiver) -> None:
    await receiver.start()
    dead = f"http://127.0.0.1:{free_port()}/hook"
    path = pi_toml(tmp_path, extra=f'[[notify]]\ntype = "webhook"\nname = "ha"\n'
                                   f'url = "{receiver.url}"\n'
                                   f'[[notify]]\ntype = "ntfy"\nname = "phone"\nurl = "{dead}"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "handshake", "pi", "notify-test",
                               "--config", str(path), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)

    done = await asyncio.to_thread(cli)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert "ha: ok" in lines
    assert any(line.startswith(f"phone: FAILED: {dead}") for line in lines), lines
    assert [json.loads(m["body"])["event"] for m in receiver.got] == ["test"]
    done = await asyncio.to_thread(cli, "ha")
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["ha: ok"]
    done = await asyncio.to_thread(cli, "nope")
    assert done.returncode == 2
    assert "no [[notify]] target named nope" in done.stderr
