"""sd_notify and the loop watchdog, against real AF_UNIX datagram sockets."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handshake.util.sdnotify import Notifier, Watchdog, healthy

PERIOD_USEC = "2000000"  # 2 s watchdog: ping every 1 s (on the fake clock)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Stop(Exception):
    """Ends Watchdog.run() from a fake sleep."""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, as systemd holds it, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock`` (sendto on AF_UNIX is synchronous)."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def watchdog_env(address: str, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": PERIOD_USEC, **extra}


def test_ready_status_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.status("host online\nDNS → host")
    assert notifier.stopping()
    assert notifier.notify(ready=True, status="up", extend_timeout_usec=5_000_000)
    assert received(sock) == [
        b"READY=1",
        "STATUS=host online DNS → host".encode(),
        b"STOPPING=1",
        b"READY=1\nSTATUS=up\nEXTEND_TIMEOUT_USEC=5000000",
    ]


def test_abstract_socket() -> None:
    name = f"edgepair-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert received(sock) == [b"READY=1"]


async def test_no_op_without_notify_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    watchdog = Watchdog(notifier, {"WATCHDOG_USEC": PERIOD_USEC})
    watchdog.register("api")
    watchdog.kick("api")
    assert not watchdog.enabled
    await watchdog.run()  # returns at once instead of looping


def test_unsupported_notify_socket_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert "not a Unix socket path" in caplog.text


def test_field_names_are_checked(listener: tuple[socket.socket, str]) -> None:
    with pytest.raises(ValueError, match="field names"):
        Notifier({"NOTIFY_SOCKET": listener[1]}).notify(**{"bad key": 1})


def test_dead_socket_warns_once_then_recovers(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "notify"
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    caplog.set_level(logging.DEBUG, logger="handshake.util.sdnotify")
    assert not notifier.ready()
    assert not notifier.ready()
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert notifier.ready()
        assert sock.recv(64) == b"READY=1"
    assert caplog.records[-1].levelno == logging.INFO


def test_healthy_names_the_stuck_loops() -> None:
    kicks = {"heartbeat": 100.0, "publish": 80.0, "dns": 95.0}
    assert healthy(kicks, now=100.0, period=30.0) == []
    assert healthy(kicks, now=111.0, period=30.0) == ["publish"]
    assert healthy(kicks, now=126.0, period=30.0) == ["dns", "publish"]
    assert healthy(kicks, now=126.0, period=30.0, limits={"publish": 90.0}) == ["dns"]
    assert healthy({}, now=1e9, period=1.0) == []


def test_pings_only_while_every_loop_kicks(listener: tuple[socket.socket, str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    sock, address = listener
    clock = FakeClock()
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": address}), watchdog_env(address), clock)
    assert watchdog.enabled
    assert watchdog.period == 2.0
    watchdog.register("heartbeat")
    watchdog.register("publish")
    assert watchdog.tick()
    assert received(sock) == [b"WATCHDOG=1"]

    clock.now += 1.5
    watchdog.kick("heartbeat")
    watchdog.kick("publish")
    clock.now += 1.5  # both kicked 1.5 s ago, within the 2 s period
    assert watchdog.tick()
    assert received(sock) == [b"WATCHDOG=1"]

    clock.now += 1.0  # publish hangs: 2.5 s without a kick
    watchdog.kick("heartbeat")
    caplog.set_level(logging.DEBUG, logger="handshake.util.sdnotify")
    assert not watchdog.tick()
    assert not watchdog.tick()
    assert received(sock) == []
    assert watchdog.stuck() == ["publish"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "publish" in warnings[0].getMessage()
    assert "heartbeat" not in warnings[0].getMessage()
    assert caplog.records[-1].levelno == logging.DEBUG  # repeats stay quiet

    watchdog.kick("publish")
    assert watchdog.tick()
    assert received(sock) == [b"WATCHDOG=1"]
    assert caplog.records[-1].levelno == logging.INFO


def test_per_loop_allowance(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    clock = FakeClock()
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": address}), watchdog_env(address), clock)
    watchdog.register("reconcile", max_silence_s=10.0)
    clock.now += 9.0
    assert watchdog.tick()
    clock.now += 2.0
    assert not watchdog.tick()
    watchdog.unregister("reconcile")
    assert watchdog.tick()
    assert received(sock) == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_kick_of_an_unknown_loop_is_a_bug(listener: tuple[socket.socket, str]) -> None:
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": listener[1]}), watchdog_env(listener[1]))
    with pytest.raises(KeyError, match="never registered"):
        watchdog.kick("typo")


async def test_run_pings_every_half_period_until_a_loop_hangs(
        listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    clock = FakeClock()
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds
        if len(sleeps) <= 2:
            watchdog.kick("heartbeat")  # the loop lives for two rounds, then hangs
        if len(sleeps) == 6:
            raise Stop

    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": address}), watchdog_env(address), clock,
                        sleep=fake_sleep)
    watchdog.register("heartbeat")
    with pytest.raises(Stop):
        await watchdog.run()
    assert sleeps == [1.0] * 6
    # Ticks at t = 0, 1, 2 (last kick at 2), 3, 4 are in time; at t = 5 the loop is 3 s silent.
    assert received(sock) == [b"WATCHDOG=1"] * 5


@pytest.mark.parametrize(("extra", "enabled"), [
    ({"WATCHDOG_PID": str(os.getpid())}, True),
    ({"WATCHDOG_PID": "1"}, False),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, False),
    ({"WATCHDOG_USEC": "soon"}, False),
    ({"WATCHDOG_USEC": ""}, False),
])
def test_watchdog_env(listener: tuple[socket.socket, str], extra: dict[str, str],
                      enabled: bool) -> None:
    address = listener[1]
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": address}), watchdog_env(address, **extra))
    assert watchdog.enabled is enabled


def test_watchdog_pid_injected(listener: tuple[socket.socket, str]) -> None:
    address = listener[1]
    env = watchdog_env(address, WATCHDOG_PID="4242")
    assert Watchdog(Notifier({"NOTIFY_SOCKET": address}), env, pid=4242).enabled
    assert not Watchdog(Notifier({"NOTIFY_SOCKET": address}), env, pid=4243).enabled
