"""Issue #10: a captured signed request is refused after a restart, on both sides.

The host agent and the Pi api daemon run as child processes on loopback; a request is
captured as the real client signs it (the same ``sign`` call) and played again after a
clean restart (SIGTERM) and after a kill -9.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from handshake.auth import sign
from tests.e2e import Site, stop, wait_http
from tests.helpers import KEY


class Captured:
    """One signed request, kept byte for byte to be sent again."""

    def __init__(self, method: str, path: str, body: bytes,
                 headers: dict[str, str] | None = None) -> None:
        self.method, self.path, self.body = method, path, body
        self.ts = int(time.time())
        signed_body = b"" if headers else body  # a streamed upload signs its hash header
        self.headers = {**(headers or {}), "Authorization": sign(
            KEY, method, path, signed_body, {k.lower(): v for k, v in (headers or {}).items()},
            now=lambda: self.ts)}

    async def send(self, base: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.request(
                self.method, base + self.path, data=self.body, headers=self.headers) as r:
            return r.status, await r.json(content_type=None)


def upload(name: str, data: bytes) -> Captured:
    sha = hashlib.sha256(data).hexdigest()
    return Captured("PUT", f"/api/v1/inbox/{name}", data, {"X-Content-SHA256": sha})


def coming_online() -> Captured:
    return Captured("POST", "/api/v1/host/coming-online", b"{}")


async def refused(request: Captured, base: str, why: str) -> None:
    code, answer = await request.send(base)
    assert code == 401, answer
    assert answer["error"]["code"] == "unauthorized"
    assert why in answer["error"]["message"]


async def after_its_second(request: Captured) -> None:
    """Signatures carry whole seconds: a new start must fall in a later one."""
    await asyncio.sleep(max(0.0, request.ts + 1 - time.time()))


async def restarts(start: Callable[[], subprocess.Popen[bytes]], url: str,
                   make: Callable[[], Captured], ok: set[int],
                   procs: list[subprocess.Popen[bytes]]) -> None:
    """Replays after a clean restart and after a kill -9 are refused; fresh requests pass."""

    def launch() -> subprocess.Popen[bytes]:
        procs.append(start())
        return procs[-1]

    proc = launch()
    await wait_http(url + "/api/v1/health")
    first = make()
    assert (await first.send(url))[0] in ok
    await refused(first, url, "replayed")  # within one run (held before)

    assert stop(proc) == 0  # clean restart: the cache is kept
    proc = launch()
    await wait_http(url + "/api/v1/health")
    await refused(first, url, "replayed")

    second = make()
    assert (await second.send(url))[0] in ok
    stop(proc, signal.SIGKILL)  # a crash: nothing saved, so what predates the start is refused
    await after_its_second(second)
    proc = launch()
    await wait_http(url + "/api/v1/health")
    await refused(second, url, "signed before this server started")
    await refused(first, url, "signed before this server started")
    third = make()
    assert (await third.send(url))[0] in ok  # the peer's next request passes

    # Stopped cleanly soon after that crash: the next start still cannot vouch for what
    # the crashed run accepted, so its bound is passed on with the cache.
    assert stop(proc) == 0
    launch()
    await wait_http(url + "/api/v1/health")
    await refused(second, url, "signed before this server started")
    await refused(third, url, "replayed")
    assert (await make().send(url))[0] in ok


async def test_the_host_agent_refuses_a_replayed_upload_after_a_restart(tmp_path: Path) -> None:
    site = Site(tmp_path)
    with site.host_config.open("a") as f:
        f.write(f'[inbox]\ndir = "{tmp_path / "nas-inbox"}"\n')
    names = iter(f"f{i}.txt" for i in range(10))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await restarts(site.start_host, site.host_url, lambda: upload(next(names), b"hello"),
                       {200, 201}, procs)
    finally:
        codes = [stop(p) for p in procs]
    assert codes[-1] == 0
    # Each accepted upload was stored once; no replay made a second copy.
    assert sorted(p.name for p in (tmp_path / "nas-inbox").iterdir()
                  if not p.name.startswith(".")) == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]


async def test_the_pi_refuses_a_replayed_message_after_a_restart(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=5.0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await restarts(site.start_pi, site.api, coming_online, {200}, procs)
    finally:
        codes = [stop(p) for p in procs]
    assert codes[-1] == 0
