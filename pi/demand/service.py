"""Wake on demand in the api daemon: the DNS trigger and the port listeners, around ``policy``.

While the host is not online its name resolves to the Pi, so the Pi sees who wants it: a
query for the name (``dns``), or a connection to one of ``ports`` at ``pi.address``. Each
demand goes through the pure ``policy.decide``; a yes is a ``WakeRequested`` with the
client's address, so the usage ledger knows who woke the host.

DNS through a forwarder (Pi-hole, dnsmasq) arrives from the forwarder's address: the real
client is taken from EDNS Client Subnet (dnsmasq ``add-subnet=32,128``), and only when the
query comes from this machine (127.0.0.1, ::1 or pi.address: the forwarder runs on the Pi);
without it such a query is the Pi's own and wakes nothing (said once in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from handshake.util.quietlog import RateLimitedLog
from handshake.util.timeutil import iso
from pi import state as sm
from pi.config import PiConfig
from pi.demand import page
from pi.demand.policy import Context, Demand, Verdict, decide
from pi.hostloop import HostController
from pi.schedule import zone

log = logging.getLogger(__name__)

# A waking page's client gets this long to send its request head; other ports are closed
# at once (the connection itself is the demand).
REQUEST_TIMEOUT_S = 5.0
# Connections a listener serves at once; more are closed unanswered (a scan, not a person).
MAX_OPEN = 64
# After the host is up, the HTTP ports redirect to it this long (browsers cache the old
# DNS answer for up to a minute), then the listeners close.
REDIRECT_GRACE_S = 60.0
# Refused demands are logged once per client and reason in this interval.
REFUSAL_LOG_S = 3600.0


class DemandService:
    """Decides demand wakes and holds the port listeners while the host is not online."""

    def __init__(self, config: PiConfig, controller: HostController, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.demand = config.wake_on_demand
        self.controller = controller
        self.clock = clock
        self.tz = zone(config.schedule)
        self.own = frozenset({_norm(config.pi.address), _norm(config.host.address)})
        # Where a forwarder on this machine (Pi-hole, dnsmasq) asks from.
        self.forwarders = frozenset({"127.0.0.1", "::1", _norm(config.pi.address)})
        self.last_wake_at: float | None = None
        self.verdicts: Counter[str] = Counter()  # why demands did (not) wake, for metrics
        self.listening: dict[int, asyncio.Server] = {}
        self.bind_errors: dict[int, str] = {}
        self._open = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refusals = RateLimitedLog(log, REFUSAL_LOG_S)
        self._warned_forwarder = False
        self._online_since: float | None = None

    # -- the decision --------------------------------------------------------------

    def offer(self, demand: Demand) -> Verdict:
        """One demand: decide, and on a yes ask the controller to wake the host."""
        now = self.clock()
        context = Context(host_state=self.controller.status.state.value,
                          last_wake_at=self.last_wake_at, own_addresses=self.own, tz=self.tz)
        verdict = decide(demand, now, context, self.demand)
        self.verdicts[verdict.why] += 1
        if verdict.wake:
            self.last_wake_at = now  # at once: a burst of queries is one wake
            log.info("waking the host: %s", verdict.detail)
            self._spawn(self.controller.handle(
                sm.WakeRequested(demand.reason, client=demand.client)))
        elif verdict.why not in ("not-asleep", "own"):
            self._refusals.log_at(logging.INFO, f"{verdict.why}:{demand.client}",
                               "demand from %s not served: %s", demand.client, verdict.detail)
        return verdict

    def on_dns(self, peer: str, subnet_client: str | None) -> None:
        """The DNS responder's hook: a query for the name from ``peer``."""
        if not self.demand.dns:
            return
        client = peer
        if _norm(peer) in self.forwarders:
            if subnet_client is None:
                if not self._warned_forwarder and self.controller.status.state.value not in (
                        "online", "waking", "going_offline"):
                    self._warned_forwarder = True
                    log.info("a query for %s came from this machine without EDNS Client "
                             "Subnet: not a demand (a forwarder needs add-subnet=32,128)",
                             self.config.dns.name)
                return
            client = subnet_client
        self.offer(Demand(client=client, via="dns"))

    # -- the listeners -------------------------------------------------------------

    def state_changed(self, before: sm.HostStatus, after: sm.HostStatus, now: float) -> None:
        """HostObserver: the listeners follow the host's state."""
        self._online_since = now if after.state is sm.HostState.ONLINE else None
        self._changed.set()

    def woken(self, reason: str, client: str | None, now: float) -> None:
        """HostObserver: a wake for another reason also starts the demand clock."""

    async def run(self) -> None:
        """Hold the listeners while the host is not online (and the redirect grace after)."""
        if not self.demand.listen_ports:
            return
        if self.controller.status.state is sm.HostState.ONLINE:
            self._online_since = self.clock()
        try:
            while True:
                await self._sync()
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_check()):
                        await self._changed.wait()
        finally:
            await self._close_all()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _wanted(self) -> bool:
        if self._online_since is None:
            return True
        return self.clock() - self._online_since < REDIRECT_GRACE_S

    def _next_check(self) -> float:
        if self._online_since is not None:
            left = REDIRECT_GRACE_S - (self.clock() - self._online_since)
            if left > 0:
                return left + 0.05
        return 3600.0

    async def _sync(self) -> None:
        if self._wanted():
            await self._open_all()
        else:
            await self._close_all()

    async def _open_all(self) -> None:
        address = self.config.pi.address
        for port in self.demand.listen_ports:
            if port in self.listening:
                continue
            try:
                server = await asyncio.start_server(self._handler(port), address, port,
                                                    reuse_address=True,
                                                    limit=page.MAX_REQUEST_BYTES)
            except OSError as exc:
                message = _bind_problem(exc, address, port)
                if self.bind_errors.get(port) != message:
                    log.warning("%s", message)
                self.bind_errors[port] = message
                continue
            self.bind_errors.pop(port, None)
            self.listening[port] = server
            log.info("listening for demand on %s:%d (%s)", address, port,
                     "waking page" if port in self.demand.http_ports else "connect")

    def _handler(self, port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                              Awaitable[None]]:
        serve = self._http if port in self.demand.http_ports else self._tcp

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve(reader, writer, port)
        return handle

    async def _close_all(self) -> None:
        servers, self.listening = list(self.listening.values()), {}
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if servers:
            log.info("host is online: demand listeners closed")

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   port: int) -> None:
        """A connection to a plain port: the demand is the connection; nothing is spoken."""
        try:
            peer = writer.get_extra_info("peername")
            if peer and self.controller.status.state is not sm.HostState.ONLINE:
                self.offer(Demand(client=str(peer[0]), via="port", port=port))
        finally:
            writer.close()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    port: int) -> None:
        """A browser: the waking page (the demand), its status JSON, or on to the host."""
        if self._open >= MAX_OPEN:
            writer.close()
            return
        self._open += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            request = page.parse_request(head)
            if request is None:
                return
            writer.write(self._answer(request, writer, port))
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            return
        finally:
            self._open -= 1
            writer.close()

    def _answer(self, request: page.Request, writer: asyncio.StreamWriter, port: int) -> bytes:
        state = self.controller.status.state
        url = page.host_url(self.config.host.address, port, request.target)
        path = request.target.split("?", 1)[0]
        if path == page.STATUS_PATH:
            return page.status_json(state.value, url if state is sm.HostState.ONLINE else None)
        if state is sm.HostState.ONLINE:
            return page.redirect(url)
        peer = writer.get_extra_info("peername")
        # Only a page load is a demand: a browser's favicon or a HEAD probe is not.
        if peer and request.method == "GET" and path != "/favicon.ico":
            self.offer(Demand(client=str(peer[0]), via="port", port=port))
        return page.waking_page(self.config.dns.name, self.controller.status.state.value,
                                self.config.host.boot_timeout_s)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def document(self) -> dict[str, Any]:
        """What host.json says of demand: enabled, listening ports, refusals by reason."""
        return {"dns": self.demand.dns, "ports": list(self.demand.listen_ports),
                "listening": sorted(self.listening), "bind_errors": {
                    str(p): m for p, m in sorted(self.bind_errors.items())},
                "verdicts": dict(sorted(self.verdicts.items())),
                "last_wake_at": iso(self.last_wake_at)}


def _norm(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _bind_problem(exc: OSError, address: str, port: int) -> str:
    where = f"{address}:{port}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot listen for demand on {where}: permission denied (ports below 1024 "
                f"need AmbientCapabilities=CAP_NET_BIND_SERVICE in the api unit)")
    if exc.errno == errno.EADDRINUSE:
        smb = (" — on 445 that is usually the inbox's Samba: SMB demand is served by the DNS "
               "trigger (wake_on_demand.dns = true), see the README") if port == 445 else ""
        return f"cannot listen for demand on {where}: another program holds the port{smb}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen for demand on {where}: pi.address is not an address of this machine"
    return f"cannot listen for demand on {where}: {exc.strerror or exc}"
