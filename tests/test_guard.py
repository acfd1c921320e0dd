"""The connection guard: pure admission and deadline rules, then a real aiohttp server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from handshake import connlimits
from handshake.connlimits import Limits, admit, descriptor_budget, limits_for
from handshake.guard import Guard, GuardedSite, Record, verdict
from handshake.http import make_app, read_body
from tests.helpers import free_port

LIMITS = Limits(max_total=8, max_per_client=3, header_timeout_s=0.6, idle_timeout_s=1.0,
                body_window_s=0.6, min_body_rate=2000, send_stall_s=1.0)


def test_admission_caps_per_client_total_and_fair_share() -> None:
    assert admit(0, 0, LIMITS) is None
    assert "this client already holds 3" in (admit(3, 3, LIMITS) or "")
    assert "the server holds 8" in (admit(0, 8, LIMITS) or "")
    # Past three quarters (6 of 8), a client holding FAIR_SHARE (4) is refused first…
    busy = Limits(max_total=8, max_per_client=8)
    assert "busy" in (admit(connlimits.FAIR_SHARE, 6, busy) or "")
    # …while a new client still gets in.
    assert admit(0, 7, busy) is None


def test_the_total_leaves_room_for_the_daemons_own_descriptors() -> None:
    assert descriptor_budget(1024) == 1024 - connlimits.RESERVED_FDS
    assert descriptor_budget(100) == connlimits.MIN_CONNECTIONS
    assert limits_for(512, 32, soft_nofile=1024).max_total == 512
    assert limits_for(5000, 32, soft_nofile=1024).max_total == 768
    assert limits_for(16, 32, soft_nofile=1024).max_per_client == 16


def _record(**kw: object) -> Record:
    return Record(peer="p", transport=None, waiting_since=0.0, **kw)  # type: ignore[arg-type]


def test_deadlines_by_phase() -> None:
    fresh = _record()
    assert verdict(fresh, 0.5, LIMITS, True, 0) is None
    assert "no request within" in (verdict(fresh, 0.6, LIMITS, True, 0) or "")
    partial = _record(requests=2, partial_since=5.0)
    assert verdict(partial, 5.5, LIMITS, True, 0) is None
    assert "headers not complete" in (verdict(partial, 5.7, LIMITS, True, 0) or "")
    idle = _record(requests=1)
    assert verdict(idle, 0.9, LIMITS, True, 0) is None
    assert "idle for" in (verdict(idle, 1.0, LIMITS, True, 0) or "")


def test_a_body_is_judged_by_its_rate_not_its_length() -> None:
    body = _record(request=object(), window_start=10.0, window_bytes=0)
    body.bytes_in = 1000  # 1000 bytes in the first 0.6 s window: below 2000 B/s
    assert verdict(body, 10.5, LIMITS, False, 0) is None  # the window is not over yet
    assert "slower than" in (verdict(body, 10.7, LIMITS, False, 0) or "")
    body.bytes_in = 1300  # 1300 B in 0.6 s ≈ 2167 B/s: keeps going, however long it takes
    assert verdict(body, 10.7, LIMITS, False, 0) is None
    assert verdict(body, 99.0, LIMITS, True, 0) is None  # the body is complete: no rule


def test_a_response_nobody_reads_is_dropped_after_the_stall_time() -> None:
    sending = _record(requests=1, send_size=4096, send_progress=3.0)
    assert verdict(sending, 3.9, LIMITS, True, 4096) is None
    assert "not read" in (verdict(sending, 4.0, LIMITS, True, 4096) or "")
    assert verdict(sending, 4.0, LIMITS, True, 2048) is None  # it is being read


@dataclass
class Server:
    port: int
    guard: Guard

    async def connect(self, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader,
                                                                 asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))


async def _upload(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await read_body(request))})


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = make_app(10 * 1024 * 1024, None)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/ok", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    guard = Guard(LIMITS, name="test")
    await GuardedSite(runner, "127.0.0.1", port, guard).start()
    try:
        yield Server(port, guard)
    finally:
        await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if it is still open after ``seconds``."""
    data = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(4096):
                data += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return data


async def test_silent_and_half_sent_connections_are_closed(server: Server) -> None:
    reader_silent, _silent = await server.connect()
    reader, half = await server.connect()
    half.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
    assert await _closed_within(reader_silent, 2.5) == b""
    assert await _closed_within(reader, 2.5) == b""
    assert server.guard.closed >= 2
    assert server.guard.stats()["connections"] == 0


async def test_a_slow_but_steady_upload_outlives_the_header_timeout(server: Server) -> None:
    body = b"x" * 2400 * 4
    reader, writer = await server.connect()
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    start = time.monotonic()
    for i in range(0, len(body), 480):  # 2400 B/s for 4 s: 7 header timeouts, never idle
        writer.write(body[i:i + 480])
        await writer.drain()
        await asyncio.sleep(0.2)
    answer = await asyncio.wait_for(reader.read(4096), 2)
    assert time.monotonic() - start > 3.5
    assert b"200 OK" in answer
    assert b'"bytes": 9600' in answer
    writer.close()


async def test_a_trickled_body_is_cut(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
    assert await _closed_within(reader, 3) is not None


async def test_one_client_is_capped_and_told_so_while_others_get_in(server: Server) -> None:
    held = [await server.connect("127.0.0.5") for _ in range(3)]
    reader, _ = await server.connect("127.0.0.5")
    refused = await _closed_within(reader, 1)
    assert refused is not None
    assert refused.startswith(b"HTTP/1.1 503")
    assert b'"code":"busy"' in refused
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{server.port}/ok") as r:
        assert r.status == 200
    assert server.guard.refused == 1
    for _, w in held:
        w.close()


async def test_at_the_cap_an_idle_kept_alive_connection_makes_room(server: Server) -> None:
    kept = []
    for n in range(8):  # 8 clients, one kept-alive connection each, after one request
        reader, writer = await server.connect(f"127.0.2.{n + 1}")
        writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert b"200 OK" in await asyncio.wait_for(reader.read(4096), 2)
        kept.append((reader, writer))
    assert server.guard.stats()["connections"] == 8
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{server.port}/ok") as r:
        assert r.status == 200  # the oldest idle one was closed for it
    assert await _closed_within(kept[0][0], 1) == b""
    assert server.guard.refused == 0
    for _, w in kept:
        w.close()
