"""Connection limits for the HTTP daemons: one LAN client cannot hold the descriptors.

aiohttp gives a connection an hour of keep-alive and no deadline for its headers or its
body, so a client that opens connections and never finishes a request keeps each one (and
its descriptor) for as long as it likes: past ``LimitNOFILE`` the daemon can no longer
open a file, a socket for the heartbeat, or a DNS-over-TCP connection. The guard sits
between the listening socket and aiohttp's protocol and

- admits a connection only within a total and a per-client cap (the total kept below the
  descriptor limit with room for the daemon's own files and sockets); past three quarters
  of the total only clients holding few connections get in, so the one filling it is the
  one refused; a refused connection gets a one-line 503 and is closed at once;
- closes a connection whose request headers are not complete within HEADER_TIMEOUT_S, one
  idle between requests for IDLE_TIMEOUT_S, one whose body arrives slower than
  MIN_BODY_RATE over a window (a rate, not a total time: a large inbox upload is long, not
  slow), and one that does not read its response for SEND_STALL_S.

The decisions are pure functions (``admit``, ``verdict``); ``Guard`` keeps the records and
sweeps them once a second. ``guard_middleware`` tells it when a request's handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from handshake.connlimits import Limits, admit
from handshake.util.quietlog import RateLimitedLog

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nRetry-After: 5\r\nContent-Length: %d\r\n\r\n%s")


@dataclass
class Record:
    """What the guard knows of one connection (times from the guard's monotonic clock)."""

    peer: str
    transport: asyncio.Transport
    waiting_since: float  # connected, or the last request's handler finished
    bytes_in: int = 0
    requests: int = 0
    partial_since: float | None = None  # the first byte of a request not yet handled
    request: web.BaseRequest | None = None
    window_start: float = 0.0
    window_bytes: int = 0
    send_size: int = 0
    send_progress: float = 0.0

    @property
    def idle(self) -> bool:
        """Between requests, nothing received and nothing to send: free to evict."""
        return (self.request is None and self.partial_since is None and self.requests > 0
                and self.send_size == 0)


def verdict(record: Record, now: float, limits: Limits, body_done: bool,
            send_size: int) -> str | None:
    """None to keep the connection; else why it is closed."""
    if record.request is not None:
        if body_done or now - record.window_start < limits.body_window_s:
            return None
        if record.bytes_in - record.window_bytes < limits.min_body_rate * limits.body_window_s:
            return (f"request body slower than {limits.min_body_rate:g} bytes/s over "
                    f"{limits.body_window_s:g} s")
        return None
    if send_size:
        if send_size == record.send_size and now - record.send_progress >= limits.send_stall_s:
            return f"response not read for {limits.send_stall_s:g} s"
        return None
    if record.partial_since is not None:
        if now - record.partial_since >= limits.header_timeout_s:
            return f"request headers not complete within {limits.header_timeout_s:g} s"
        return None
    if record.requests == 0:
        if now - record.waiting_since >= limits.header_timeout_s:
            return f"no request within {limits.header_timeout_s:g} s of connecting"
        return None
    if now - record.waiting_since >= limits.idle_timeout_s:
        return f"idle for {limits.idle_timeout_s:g} s"
    return None


@dataclass
class Guard:
    limits: Limits
    name: str = "http"
    clock: Callable[[], float] = time.monotonic
    records: dict[GuardedProtocol, Record] = field(default_factory=dict)
    per_client: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    closed: int = 0
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._log = RateLimitedLog(log, interval_s=60.0)

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: GuardedProtocol(self, inner)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweeper())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def open(self, protocol: GuardedProtocol, transport: asyncio.Transport) -> Record | None:
        """A new connection: its record, or None when it is refused (answered and closed)."""
        peer = _peer(transport)
        reason = admit(self.per_client[peer], len(self.records), self.limits)
        full = len(self.records) >= self.limits.max_total
        if reason is not None and full and self._evict_idle():  # an idle keep-alive makes room
            reason = admit(self.per_client[peer], len(self.records), self.limits)
        if reason is not None:
            self.refused += 1
            self._log.warning(f"{self.name}-refused", "%s: refused a connection from %s: %s",
                              self.name, peer, reason)
            body = b'{"error":{"code":"busy","message":"too many connections; try again"}}'
            transport.write(REFUSAL % (len(body), body))
            transport.close()
            return None
        record = Record(peer, transport, waiting_since=self.clock())
        self.records[protocol] = record
        self.per_client[peer] += 1
        return record

    def close(self, protocol: GuardedProtocol) -> None:
        record = self.records.pop(protocol, None)
        if record is not None:
            self.per_client[record.peer] -= 1
            if self.per_client[record.peer] <= 0:
                del self.per_client[record.peer]

    def sweep(self) -> int:
        """Close what has run out of time; how many were closed."""
        now = self.clock()
        expired = []
        for protocol, record in self.records.items():
            body_done = record.request is None or record.request.content.is_eof()
            send_size = record.transport.get_write_buffer_size()
            reason = verdict(record, now, self.limits, body_done, send_size)
            if reason is not None:
                expired.append((protocol, record, reason))
                continue
            if record.request is not None and now - record.window_start >= self.limits.body_window_s:
                record.window_start, record.window_bytes = now, record.bytes_in
            if send_size != record.send_size:
                record.send_size, record.send_progress = send_size, now
                if record.request is None:
                    record.waiting_since = now  # the wait for the next request starts after it
        for protocol, record, reason in expired:
            self._log.warning(f"{self.name}-closed", "%s: closed a connection from %s: %s",
                              self.name, record.peer, reason)
            record.transport.abort()  # the descriptor is free now, not after a FIN dance
            self.close(protocol)
        self.closed += len(expired)
        return len(expired)

    def _evict_idle(self) -> bool:
        idle = [(r.waiting_since, p) for p, r in self.records.items() if r.idle]
        if not idle:
            return False
        _, protocol = min(idle, key=lambda item: item[0])
        self.records[protocol].transport.abort()
        self.close(protocol)
        return True

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                self.sweep()
            except Exception:  # the guard must never take the daemon with it
                log.exception("%s: connection sweep failed", self.name)

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self.records), "clients": len(self.per_client),
                "refused": self.refused, "closed": self.closed}


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard (created only when admitted)."""

    def __init__(self, guard: Guard, inner: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self._factory = inner
        self.inner: Any = None
        self.record: Record | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.record = self.guard.open(self, transport)
        if self.record is not None:
            self.inner = self._factory()
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        record = self.record
        if record is None or self.inner is None:
            return
        record.bytes_in += len(data)
        if record.request is None and record.partial_since is None:
            record.partial_since = self.guard.clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.close(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def begin(self, request: web.BaseRequest) -> None:
        if self.record is not None:
            now = self.guard.clock()
            self.record.request = request
            self.record.partial_since = None
            self.record.window_start, self.record.window_bytes = now, self.record.bytes_in

    def end(self) -> None:
        if self.record is not None:
            self.record.request = None
            self.record.requests += 1
            self.record.waiting_since = self.guard.clock()


@web.middleware
async def guard_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Mark the connection as in a request (its body is then judged by rate)."""
    protocol = request.transport.get_protocol() if request.transport is not None else None
    if not isinstance(protocol, GuardedProtocol):
        return await handler(request)  # a test server, not behind a guard
    protocol.begin(request)
    try:
        return await handler(request)
    finally:
        protocol.end()


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site with every connection behind ``guard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: Guard,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.factory(server), self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
        self.guard.start()

    async def stop(self) -> None:
        await self.guard.stop()
        await super().stop()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
