"""End to end: the real Pi api daemon and the real host agent on loopback, ``[idle] enabled``.

suspend_command is a script that records each call (time, argv) and exits 0 (or 1). Idle,
the agent tells the Pi (going-offline with the wake_at of its wake_schedule) and only then
"suspends"; every busy signal — an SMB file open in the real smbd, a named process, an
established TCP connection, an inbox upload in flight — keeps it up until it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handshake.client import HandshakeClient
from handshake.util.timeutil import iso
from tests.e2e import Site, status, stop, wait_http, wait_state
from tests.helpers import KEY, free_port
from tests.test_inbox_samba import Smb

INTERVAL_S = 0.1  # check_interval_s
IDLE_AFTER_S = 0.4
SCRIPT = """#!/bin/sh
echo "$(date +%s.%N) $*" >> {calls}
exit {code}
"""


class IdleSite:
    """A Site whose host config has ``[idle]`` and a recording suspend script."""

    def __init__(self, root: Path, idle: str = "", *, exit_code: int = 0,
                 inbox: bool = False, idle_after_s: float = IDLE_AFTER_S) -> None:
        self.site = Site(root, interval=0.2)
        self.calls = root / "suspend-calls.txt"
        script = root / "suspend.sh"
        script.write_text(SCRIPT.format(calls=self.calls, code=exit_code))
        script.chmod(0o755)
        # A schedule entry two hours ahead (UTC, today or tomorrow): its wake_at is known.
        at = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
        self.event_at = at
        self.wake_at = at - timedelta(seconds=60)
        extra = f'[inbox]\ndir = "{root / "host-inbox"}"\n' if inbox else ""
        with self.site.host_config.open("a") as f:
            f.write(f"""{extra}
[idle]
enabled = true
idle_after_s = {idle_after_s}
check_interval_s = {INTERVAL_S}
suspend_command = ["{script}", "suspend"]
min_sleep_s = 300
wakeup_delta_s = 60
wake_schedule = [{{at = "{at:%H:%M}", days = "daily"}}]
timezone = "UTC"
{idle}
""")
        self.idle_json = root / "host-state" / "public" / "idle.json"

    def suspends(self) -> list[float]:
        if not self.calls.exists():
            return []
        return [float(line.split()[0]) for line in self.calls.read_text().splitlines()]

    def idle(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.idle_json.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return doc

    def check(self, name: str) -> dict[str, Any] | None:
        return next((c for c in self.idle().get("checks", []) if c["name"] == name), None)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start the Pi and the host agent for an IdleSite; both stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    async def start(idle: str = "", **kwargs: Any) -> IdleSite:
        site = IdleSite(tmp_path, idle, **kwargs)
        procs.append(site.site.start_pi())
        await wait_http(site.site.api + "/api/v1/health")
        procs.append(site.site.start_host())
        await wait_http(site.site.host_url + "/api/v1/health")
        return site

    yield start
    for proc in reversed(procs):
        stop(proc)


async def until(predicate: Callable[[], Any], timeout: float = 8.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what or predicate}")
        await asyncio.sleep(0.02)


async def stays_awake(site: IdleSite, check: str, seconds: float = 1.2) -> dict[str, Any]:
    """The check keeps the host up for ``seconds`` (several idle_after_s): no suspend at all."""
    result = await until(lambda: (c := site.check(check)) and c["busy"] and c, what=check)
    await asyncio.sleep(seconds)
    assert site.suspends() == [], (site.idle(), (site.site.root / "host.log").read_text())
    assert (await status(site.site.api))["state"] == "online"
    doc = site.idle()
    assert doc["decision"] == "stay"
    assert doc["idle_since"] is None
    assert site.check(check)["busy"] is True  # type: ignore[index]
    return dict(result)


async def sleeps(site: IdleSite) -> None:
    await wait_state(site.site.api, "going_offline", timeout=8)
    await until(site.suspends, what="the suspend command")


async def test_idle_host_tells_the_pi_with_its_wake_at_and_then_suspends(
        running: Callable[..., Any]) -> None:
    site: IdleSite = await running()
    await wait_state(site.site.api, "going_offline", timeout=8)
    doc = await status(site.site.api)
    assert doc["reason"] == "suspend"
    assert doc["next_wake"] == {"at": iso(site.wake_at), "source": "host"}
    calls = await until(site.suspends, what="the suspend command")
    assert (site.calls.read_text().split()[1:]) == ["suspend"]
    assert len(calls) == 1
    # The suspend script records its call before the loop publishes the outcome: wait for it.
    idle = await until(lambda: (d := site.idle()) and d.get("last_suspend") and d,
                       what="the suspend outcome in idle.json")
    assert idle["schema"] == "edgepair.idle/1"
    assert idle["last_suspend"]["result"] == "ok"
    assert idle["last_suspend"]["wake_at"] == iso(site.wake_at)
    assert idle["next_wake"]["source"] == f"wake_schedule {site.event_at:%H:%M}"
    assert {c["name"]: c["verdict"] for c in idle["checks"]} == {"activity": "idle",
                                                                  "inhibitors": "idle"}


async def test_a_named_process_keeps_the_host_awake_until_it_ends(
        running: Callable[..., Any]) -> None:
    job = subprocess.Popen(["edgepair-busyjob", "60"], executable="sleep")
    try:
        site: IdleSite = await running('processes = ["edgepair-busyjob"]')
        check = await stays_awake(site, "processes")
        assert check["detail"] == f"edgepair-busyjob (pid {job.pid})"
    finally:
        job.kill()
        job.wait()
    await sleeps(site)


async def test_an_established_connection_to_a_listed_port_keeps_the_host_awake(
        running: Callable[..., Any]) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as server, \
            socket.create_connection(("127.0.0.1", port)) as client:
        accepted, _ = server.accept()
        with accepted:
            site: IdleSite = await running(f"tcp_ports = [{port}]")
            check = await stays_awake(site, "tcp_ports")
            assert check["detail"] == f"1 connection to port {port}"
            client.close()
        # Closed (and only listening): nothing keeps the host up.
        await sleeps(site)


async def test_an_smb_file_open_keeps_the_host_awake_an_idle_smb_session_does_not(
        running: Callable[..., Any], tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    smb = Smb(tmp_path / "smb", share)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv = ["smbclient", "//127.0.0.1/inbox", "-p", str(smb.port), "-N", "-s", str(smb.conf)]
    # A connected client that opened nothing (an Explorer window on the share)...
    browsing = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    # ...and one writing a file that stays open while the FIFO gives it nothing.
    writing = subprocess.Popen([*argv, "-c", "put fifo big.bin"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    feeder = fifo.open("wb")
    try:
        site: IdleSite = await running(f'smb = true\nsmb_config = "{smb.conf}"')
        check = await stays_awake(site, "smb")
        assert check["detail"] == "1 open file: big.bin (127.0.0.1)"
        feeder.close()  # the upload ends, the file is closed; the browsing session stays
        writing.wait(timeout=10)
        await sleeps(site)
        detail = site.check("smb")["detail"]  # type: ignore[index]
        assert detail == "1 session without open files (127.0.0.1)"
        assert browsing.poll() is None
    finally:
        if not feeder.closed:
            feeder.close()
        for proc in (writing, browsing):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        smb.stop()


async def test_an_inbox_upload_in_flight_keeps_the_host_awake(
        running: Callable[..., Any]) -> None:
    # Time enough to start the upload before the host would sleep (with 1.5 s the agent's
    # start could use it all up, and the suspend came before the upload began).
    site: IdleSite = await running(inbox=True, idle_after_s=4.0)
    assert site.suspends() == []
    data = os.urandom(4 * 1024 * 1024)
    done = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i:i + 256 * 1024]
            await asyncio.sleep(0.12)  # 16 pieces: about 2 s in flight
        done.set()

    async with HandshakeClient(site.site.host_url, KEY) as client:
        upload = asyncio.create_task(client.stream(
            "PUT", "/api/v1/inbox/slow.bin", slowly(),
            content_sha256=hashlib.sha256(data).hexdigest(), content_length=len(data)))
        check = await until(lambda: (c := site.check("activity")) and c["busy"] and c)
        assert check["detail"] == "inbox upload"
        while not upload.done():  # the host's answer ends the upload, not the last chunk
            assert site.suspends() == []
            await asyncio.sleep(0.05)
        answer = await upload
    assert answer["bytes"] == len(data)
    assert site.suspends() == []
    await until(site.suspends, what="the suspend after the upload")


async def test_a_failing_suspend_brings_the_pi_back_and_backs_off(
        running: Callable[..., Any]) -> None:
    site: IdleSite = await running(exit_code=1)
    await until(site.suspends, what="the suspend command")
    # coming-online at once: the Pi sees the host online again within one heartbeat.
    await wait_state(site.site.api, "online", timeout=0.5)
    doc = await until(lambda: (d := site.idle()).get("failures") and d)
    assert doc["last_suspend"]["result"] == "failed"
    assert "exited 1" in doc["last_suspend"]["detail"]
    assert doc["backoff_until"] is not None
    await asyncio.sleep(2.5)
    calls = site.suspends()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # Back-off doubles from check_interval_s (0.1, 0.2, 0.4, 0.8 …) on top of idle time:
    # a few tries, each gap longer than the one before.
    assert 3 <= len(calls) <= 7, calls
    assert gaps[-1] > 2 * gaps[0], gaps
    assert (await status(site.site.api))["state"] in ("online", "going_offline")
    log = (site.site.root / "host.log").read_text()
    assert "suspend failed" in log
