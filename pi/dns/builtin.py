"""Authoritative DNS responder for the one failover name (dnspython, asyncio UDP and TCP).

Pi-hole or dnsmasq forwards the zone to it: ``server=/home.arpa/127.0.0.1#5335``. The zone
is the name's parent (``home.arpa`` for ``nas.home.arpa``): the name answers its address,
other names in the zone NXDOMAIN, names outside REFUSED. Each distinct query is answered
once by dnspython, then from a cache of wire bytes with the query's id patched in. What
``limits`` refuses (big or multi-question queries, greedy TCP clients) costs no parsing.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pi.dns import DnsRejected, DnsUnavailable
from pi.dns.limits import (
    MAX_QUERY_BYTES,
    MAX_TCP_CONNECTIONS,
    MAX_TCP_PER_CLIENT,
    Slot,
    Verdict,
    admit,
    formerr,
    screen,
)

log = logging.getLogger(__name__)

# RFC 7766 §6.2.3: close idle connections after a few seconds; frees the Pi's sockets. Only
# a complete query restarts it, and an answer the client doesn't read within it closes too.
TCP_IDLE_TIMEOUT_S = 10.0
# Distinct queries kept as wire bytes (0x20 case variants, EDNS options); at most
# MAX_QUERY_BYTES each, so junk can't pin much memory.
CACHE_ENTRIES = 1024
# UDP payload advertised in EDNS answers (DNS flag day 2020).
EDNS_PAYLOAD = 1232
# Datagrams answered per loop wakeup before TCP and timers get a turn.
UDP_BATCH = 64
# One byte more than a query may have: the kernel drops the rest of a bigger datagram, and
# the length says it was too big (no 64 KB copy per junk packet).
UDP_RECEIVE_BYTES = MAX_QUERY_BYTES + 1
# With port 0 the OS picks the UDP port; TCP may find it taken and must try again.
BIND_ATTEMPTS = 5
# Questions that mean "I want to reach the name" (demand): an address, or a browser's
# HTTPS/SVCB lookup before it connects.
DEMAND_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY,
                          dns.rdatatype.HTTPS, dns.rdatatype.SVCB})
# Told of every query for the name: (the peer's address, the client a forwarder named
# in EDNS Client Subnet, or None). Called on the event loop; must not block.
OnQuery = Callable[[str, str | None], None]
_NO_DEMAND: tuple[bool, str | None] = (False, None)
# SOA timers; only the minimum matters (negative-caching TTL, set to ttl_s).
SOA_TIMERS = (3600, 600, 86400)


class BuiltinDns:
    """Answers ``name`` with the current address over UDP and TCP on ``host:port``."""

    def __init__(self, name: str, ttl_s: int, host: str, port: int, *,
                 tcp_idle_s: float = TCP_IDLE_TIMEOUT_S,
                 tcp_per_client: int = MAX_TCP_PER_CLIENT,
                 tcp_total: int = MAX_TCP_CONNECTIONS) -> None:
        self.name = dns.name.from_text(name)
        # A single-label name gets no zone of its own beyond itself.
        self.zone = self.name.parent() if len(self.name) > 2 else self.name
        self.ttl_s = ttl_s
        self.host = host
        self.port = port
        self.tcp_idle_s = tcp_idle_s
        self.tcp_per_client = tcp_per_client
        self.tcp_total = tcp_total
        self.address: str | None = None
        self.queries = 0
        self.dropped = 0
        self.screened = 0  # queries dropped or answered FORMERR from the header alone
        self.tcp_refused = 0  # connections closed at once: their client is over its cap
        self.tcp_evicted = 0  # idle connections closed to make room for a new client
        self._serial = int(time.time()) & 0xFFFFFFFF
        self._record: dns.rrset.RRset | None = None
        self._soa = self._make_soa()
        # Answers by query bytes (id stripped), with what the query means for demand.
        self._cache: dict[bytes, tuple[bytes, tuple[bool, str | None]]] = {}
        self.on_query: OnQuery | None = None
        self._udp: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], Slot] = {}
        self._warned = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(BIND_ATTEMPTS):
            udp = await _bind_udp(loop, self.host, self.port)
            port = int(udp.getsockname()[1])
            try:
                self._tcp = await asyncio.start_server(self._accept_tcp, self.host, port)
            except OSError as exc:
                udp.close()
                if self.port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < BIND_ATTEMPTS:
                    continue
                raise _bind_error(exc, self.host, port) from exc
            self._udp, self.port = udp, port
            loop.add_reader(udp.fileno(), self._read_udp)
            break
        log.info("DNS responder for %s (zone %s) on %s:%d udp+tcp", self.name, self.zone,
                 self.host, self.port)

    async def set_address(self, address: str) -> None:
        ip = ipaddress.ip_address(address)
        text = str(ip)
        if text == self.address:
            log.debug("%s already answers %s", self.name, text)
            return
        rdtype = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
        self._record = dns.rrset.from_text(self.name, self.ttl_s, dns.rdataclass.IN, rdtype, text)
        self._serial = max(self._serial + 1, int(time.time())) & 0xFFFFFFFF
        self._soa = self._make_soa()
        self._cache.clear()
        self.address = text
        log.info("%s now answers %s", self.name, text)

    async def get_address(self) -> str | None:
        return self.address

    async def close(self) -> None:
        if self._udp is not None:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            clients = list(self._clients)
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    def respond(self, data: bytes, peer: str | None = None) -> bytes | None:
        """The response to one wire-format query from ``peer``, or None to drop it."""
        self.queries += 1
        verdict = screen(data)
        if verdict is not Verdict.PARSE:
            self.screened += 1
            self._warn_once("DNS query of %d bytes refused from its header alone (%s)",
                            len(data), verdict.value)
            if verdict is Verdict.FORMERR:
                return formerr(data)
            self.dropped += 1
            return None
        cached = self._cache.get(data[2:])
        if cached is not None:
            tail, demand = cached
            self._tell(peer, demand)
            return data[:2] + tail
        try:
            response, demand = self._answer(data)
        except Exception as exc:  # any junk a client sends is dropped, never fatal
            log.debug("dropped a malformed DNS query: %s", exc)
            self.dropped += 1
            return None
        if len(self._cache) >= CACHE_ENTRIES:
            del self._cache[next(iter(self._cache))]
        self._cache[data[2:]] = (response[2:], demand)
        self._tell(peer, demand)
        return response

    def _tell(self, peer: str | None, demand: tuple[bool, str | None]) -> None:
        wanted, subnet_client = demand
        if wanted and peer is not None and self.on_query is not None:
            try:
                self.on_query(peer, subnet_client)
            except Exception:  # a listener's bug must not cost the answer
                log.exception("DNS demand listener failed")

    def _answer(self, data: bytes) -> tuple[bytes, tuple[bool, str | None]]:
        """The answer, and whether the query wants the name (with its ECS client, if any)."""
        query = dns.message.from_wire(data)  # screen() has checked the size and QR, QDCOUNT
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        demand = _NO_DEMAND
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        else:
            question = query.question[0]
            self._resolve(question, response)
            if question.name == self.name and question.rdtype in DEMAND_TYPES:
                demand = (True, _subnet_client(query))
        return response.to_wire(), demand

    def _resolve(self, question: dns.rrset.RRset, response: dns.message.Message) -> None:
        qname, qtype = question.name, question.rdtype
        if question.rdclass != dns.rdataclass.IN or not qname.is_subdomain(self.zone):
            response.set_rcode(dns.rcode.REFUSED)
        elif qname == self.name:
            if self._record is None:
                response.set_rcode(dns.rcode.SERVFAIL)  # no address decided yet
                return
            response.flags |= dns.flags.AA
            if qtype in (self._record.rdtype, dns.rdatatype.ANY):
                response.answer.append(self._record)
            else:
                response.authority.append(self._soa)  # NODATA: the name exists, not this type
        elif qname == self.zone:
            response.flags |= dns.flags.AA
            if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
                response.answer.append(self._soa)
            else:
                response.authority.append(self._soa)
        else:
            response.flags |= dns.flags.AA
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa)

    def _make_soa(self) -> dns.rrset.RRset:
        refresh, retry, expire = SOA_TIMERS
        rname = dns.name.from_text("hostmaster", self.zone)
        text = (f"{self.name} {rname} {self._serial} {refresh} {retry} {expire} {self.ttl_s}")
        return dns.rrset.from_text(self.zone, self.ttl_s, dns.rdataclass.IN, dns.rdatatype.SOA,
                                   text)

    def _read_udp(self) -> None:
        """Answer every datagram waiting (up to a batch): one loop wakeup serves many."""
        sock = self._udp
        if sock is None:
            return
        buffer = bytearray(UDP_RECEIVE_BYTES)
        for _ in range(UDP_BATCH):
            try:
                size, peer = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error for an earlier answer
                log.debug("DNS UDP receive error: %s", exc)
                continue
            response = self.respond(bytes(buffer[:size]), str(peer[0]))
            if response is None:
                continue
            try:
                sock.sendto(response, peer)
            except OSError as exc:  # a full buffer drops the answer: DNS clients retry
                log.debug("DNS UDP answer to %s dropped: %s", peer, exc)

    def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        admission = admit(self._clients, client, per_client=self.tcp_per_client,
                          total=self.tcp_total)
        if not admission.accept:
            self.tcp_refused += 1
            self._warn_once("DNS TCP client %s is over its %d connections: refused", client,
                            self.tcp_per_client)
            writer.close()
            return
        if admission.evict is not None:
            self.tcp_evicted += 1
            victim = self._clients.pop(admission.evict)
            log.debug("DNS TCP full: closing an idle connection of %s for %s", victim.client,
                      client)
            admission.evict.cancel()
        # Our own task (not start_server's) so close() can cancel it cleanly.
        slot = Slot(client, loop.time())
        task = loop.create_task(self._serve_tcp(reader, writer, slot))
        self._clients[task] = slot
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._clients.pop(task, None)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         slot: Slot) -> None:
        """Length-prefixed queries until idle, garbage or EOF (RFC 7766)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.tcp_idle_s):  # for the whole message
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        if size > MAX_QUERY_BYTES:
                            self.screened += 1
                            return  # not even read: no query of ours is that big
                        data = await reader.readexactly(size)
                except (TimeoutError, asyncio.IncompleteReadError):
                    return
                slot.last_query = loop.time()
                response = self.respond(data, slot.client)
                if response is None:
                    return
                writer.write(len(response).to_bytes(2, "big") + response)
                try:
                    async with asyncio.timeout(self.tcp_idle_s):  # a client that never reads
                        await writer.drain()
                except TimeoutError:
                    return
        except ConnectionError as exc:
            log.debug("DNS TCP client went away: %s", exc)
        finally:
            writer.close()

    def _warn_once(self, message: str, *args: object) -> None:
        """The first abuse is worth a WARNING; repeats go to DEBUG, not to flood the journal."""
        log.log(logging.DEBUG if self._warned else logging.WARNING, message, *args)
        self._warned = True


def _subnet_client(query: dns.message.Message) -> str | None:
    """The client a forwarder (dnsmasq ``add-subnet=32,128``) named: a full-length ECS only."""
    for option in query.options:
        if isinstance(option, dns.edns.ECSOption) and option.srclen == (
                32 if option.family == 1 else 128):
            return str(option.address)
    return None


async def _bind_udp(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                       flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise _bind_error(exc, host, port) from exc
    try:
        sock.setblocking(False)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, host, port) from exc
    return sock


def _bind_error(exc: OSError, host: str, port: int) -> Exception:
    where = f"{host}:{port}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DnsRejected(f"cannot listen for DNS on {where}: permission denied (ports below "
                           f"1024 need CAP_NET_BIND_SERVICE; the default 5335 does not)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return DnsRejected(f"cannot listen for DNS on {where}: not an address of this machine "
                           f"(dns.listen)")
    if exc.errno == errno.EADDRINUSE:
        return DnsUnavailable(f"cannot listen for DNS on {where}: the port is in use by "
                              f"another program")
    return DnsUnavailable(f"cannot listen for DNS on {where}: {exc}")
