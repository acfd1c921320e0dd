"""The controller: heartbeats over real HTTP, reconcile, restart survival, quiet logs."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from pi import hostloop
from pi import state as sm
from pi.config import PiConfig, load
from pi.heartbeat import Beat, HeartbeatProbe
from pi.hostloop import HostController
from tests.helpers import pi_toml
from tests.memdns import MemoryDns


class FakeHost:
    """A host agent's health endpoint that can be switched off (connection refused)."""

    def __init__(self) -> None:
        self.up = True
        self.hits = 0

    async def health(self, request: web.Request) -> web.Response:
        self.hits += 1
        if not self.up:
            raise web.HTTPServiceUnavailable
        return web.json_response({"ok": True, "boot_id": "b-1", "uptime_s": 12.5})


async def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def host(aiohttp_server: Any) -> tuple[FakeHost, str]:
    fake = FakeHost()
    app = web.Application()
    app.router.add_get("/api/v1/health", fake.health)
    server = await aiohttp_server(app)
    return fake, str(server.make_url("")).rstrip("/")


def make(config: PiConfig, dns: MemoryDns, session: aiohttp.ClientSession,
         wols: list[float] | None = None) -> HostController:
    async def send_wol() -> None:
        if wols is not None:
            wols.append(time.time())

    probe = HeartbeatProbe(config.host.url, config.host.heartbeat_timeout_s, session)
    return HostController(config, dns, send_wol, probe.probe)


async def test_heartbeats_bring_host_online_and_loss_is_unreachable(
        tmp_path: Path, host: tuple[FakeHost, str], caplog: pytest.LogCaptureFixture) -> None:
    fake, url = host
    config = load(pi_toml(tmp_path, host_url=url))
    dns = MemoryDns()
    async with aiohttp.ClientSession() as session:
        controller = make(config, dns, session)
        await controller.start()
        assert dns.address == "127.0.0.2"
        async with controller.running():
            await wait_for(lambda: controller.status.state is sm.HostState.ONLINE)
            assert dns.address == "127.0.0.3"
            assert fake.hits >= 2
            caplog.set_level(logging.DEBUG, logger="pi.hostloop")
            fake.up = False
            await wait_for(lambda: controller.status.state is sm.HostState.UNREACHABLE)
            assert dns.address == "127.0.0.2"
            await asyncio.sleep(0.3)  # more failures: they must not be WARNING again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "heartbeat" in r.getMessage()]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG
             and "heartbeat" in r.getMessage()]
    assert len(warnings) == 1
    assert len(debug) >= 2
    doc = json.loads((config.public_dir / "host.json").read_text())
    assert doc["state"] == "unreachable"
    assert doc["alarm"]["message"] == "host stopped answering without notice"
    assert doc["last_heartbeat"]["ok"] is False


async def test_state_and_since_survive_a_restart(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    dns = MemoryDns()

    async def probe() -> Beat:
        return Beat(ok=False, at=time.time())

    async def send_wol() -> None:
        pass

    first = HostController(config, dns, send_wol, probe, clock=lambda: 5000.0)
    await first.handle(sm.ComingOnline())
    await first.handle(sm.GoingOffline("suspend", wake_at=9000.0))
    second = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: 6000.0)
    assert second.status.state is sm.HostState.GOING_OFFLINE
    assert second.status.since == 5000.0
    assert second.alarm is None
    assert second.status.wake_at == 9000.0


async def test_unreadable_state_file_starts_fresh(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    config.private_dir.mkdir(parents=True)
    (config.private_dir / "host-state.json").write_text('{"state": "sleepy"}')

    async def probe() -> Beat:
        return Beat(ok=False, at=0)

    async def send_wol() -> None:
        pass

    controller = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: 7.0)
    assert controller.status.state is sm.HostState.OFFLINE
    assert controller.status.since == 7.0


async def test_reconcile_restores_a_changed_record(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config = load(pi_toml(tmp_path))
    dns = MemoryDns()

    async def probe() -> Beat:
        return Beat(ok=False, at=0)

    async def send_wol() -> None:
        pass

    controller = HostController(config, dns, send_wol, probe)
    await controller.start()
    assert await controller.reconcile() is False
    dns.address = "10.9.9.9"  # changed behind the daemon's back
    assert await controller.reconcile() is True
    assert dns.address == "127.0.0.2"
    assert "expected 127.0.0.2: restoring" in caplog.text


async def test_dns_failure_is_retried_by_reconcile(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    dns = MemoryDns()
    dns.fail = True

    async def probe() -> Beat:
        return Beat(ok=False, at=0)

    async def send_wol() -> None:
        pass

    controller = HostController(config, dns, send_wol, probe)
    await controller.start()
    await controller.handle(sm.ComingOnline())
    doc = controller.document(time.time())
    assert doc.dns["applied"] is False
    assert "backend down" in doc.dns["error"]
    dns.fail = False
    await controller.reconcile()
    assert dns.address == "127.0.0.3"
    assert controller.document(time.time()).dns["applied"] is True


async def test_scheduled_wake_fires_once(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path, extra='[[schedule.wake]]\nat = "07:00"\n'
                                          '[schedule]\ntimezone = "UTC"\n'))
    now = [time.mktime((2026, 11, 23, 6, 59, 0, 0, 0, 0)) - time.timezone]
    wols: list[int] = []

    async def probe() -> Beat:
        return Beat(ok=False, at=0)

    async def send_wol() -> None:
        wols.append(1)

    controller = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: now[0])
    assert controller.next_wake() == {"at": "2026-11-23T07:00:00.000Z", "source": "schedule"}
    await controller.tick()
    assert wols == []
    now[0] += 60
    await controller.tick()
    assert wols == [1]
    assert controller.status.state is sm.HostState.WAKING
    await controller.tick()
    assert wols == [1]
    assert controller.next_wake() == {"at": "2026-11-24T07:00:00.000Z", "source": "schedule"}


@pytest.mark.parametrize("body", [
    b'{"ok": true, "boot_id": "b", "uptime_s": 1' + b"0" * 400 + b"}",  # float() overflows
    b'{"ok": true, "boot_id": "b", "uptime_s": 1e999}',  # inf
    b'{"ok": true, "boot_id": "b", "uptime_s": NaN}',
    b"[" * 100_000,  # recursion
])
async def test_a_host_answering_nonsense_is_a_failed_heartbeat(aiohttp_server: Any,
                                                               body: bytes) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/health", health)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        beat = await HeartbeatProbe(str(server.make_url("")), 1.0, session).probe()
    assert beat.ok is False
    assert beat.error is not None
    assert "ValidationError" in beat.error


async def test_the_heartbeat_loop_survives_a_bug_and_kicks_through_long_intervals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(hostloop, "KICK_S", 0.02)
    config = load(pi_toml(tmp_path))
    config = msgspec.structs.replace(config, host=msgspec.structs.replace(
        config.host, heartbeat_interval_s=0.2, heartbeat_timeout_s=0.1, rise=1))
    calls = 0
    kicks: list[float] = []

    async def probe() -> Beat:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the probe")
        return Beat(ok=True, at=time.time())

    async def send_wol() -> None:
        pass

    controller = HostController(config, MemoryDns(), send_wol, probe,
                                kick=lambda name: kicks.append(time.monotonic()))
    await controller.start()
    with caplog.at_level(logging.DEBUG, logger="pi.hostloop"):
        async with controller.running():
            await wait_for(lambda: controller.status.state is sm.HostState.ONLINE)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["heartbeat loop: unexpected error; it goes on"]
    assert any("iterations complete again" in r.getMessage() for r in caplog.records)
    # Kicks while waiting out the interval, not once per heartbeat only.
    assert len(kicks) >= 2 * calls
    assert max(b - a for a, b in itertools.pairwise(kicks)) < 0.2


async def test_a_full_sd_card_does_not_stop_failover(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    config = load(pi_toml(tmp_path))
    dns = MemoryDns()

    async def probe() -> Beat:
        return Beat(ok=True, at=time.time())

    async def send_wol() -> None:
        pass

    controller = HostController(config, dns, send_wol, probe)
    await controller.start()

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hostloop.atomic, "write_json", full)
    with caplog.at_level(logging.WARNING, logger="pi.hostloop"):
        await controller.handle(sm.ComingOnline())
    assert controller.status.state is sm.HostState.ONLINE
    assert dns.address == "127.0.0.3"
    assert "No space left on device" in caplog.text


async def test_an_alarm_survives_a_restart_until_resolved(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))

    async def probe() -> Beat:
        return Beat(ok=False, at=time.time())

    async def send_wol() -> None:
        pass

    first = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: 5000.0)
    await first.handle(sm.ComingOnline())
    for _ in range(config.host.fall):
        await first.handle(sm.HeartbeatFail("refused"))
    assert first.alarm is not None
    second = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: 6000.0)
    assert second.status.state is sm.HostState.UNREACHABLE
    assert second.alarm is not None
    assert (second.alarm.message, second.alarm.since) == (first.alarm.message, 5000.0)
    assert second.document(6000.0).alarm["message"] == "host stopped answering without notice"
    await second.handle(sm.ComingOnline())
    third = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: 7000.0)
    assert third.alarm is None
