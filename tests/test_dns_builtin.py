"""The builtin responder over real UDP and TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from pi.dns import DnsRejected, DnsUnavailable
from pi.dns.builtin import BuiltinDns

NAME = "nas.home.arpa"
TTL = 5
TIMEOUT = 2.0  # only reached when the responder is broken


@pytest.fixture
async def server() -> AsyncIterator[BuiltinDns]:
    backend = BuiltinDns(NAME, TTL, "127.0.0.1", 0)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def udp(server: BuiltinDns, name: str, rdtype: str = "A", *,
              edns: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None, payload=1232)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)


async def tcp(server: BuiltinDns, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.tcp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)


Ask = Callable[[BuiltinDns, str], Awaitable[dns.message.Message]]


def addresses(response: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


async def test_servfail_before_any_address(server: BuiltinDns) -> None:
    response = await udp(server, NAME)
    assert response.rcode() == dns.rcode.SERVFAIL
    assert await server.get_address() is None


@pytest.mark.parametrize("ask", [udp, tcp])
async def test_a_record_is_authoritative_with_the_ttl(server: BuiltinDns, ask: Ask) -> None:
    await server.set_address("192.168.1.10")
    response = await ask(server, NAME)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert addresses(response) == ["192.168.1.10"]
    assert response.answer[0].ttl == TTL
    assert response.answer[0].rdtype == dns.rdatatype.A


async def test_ipv6_address_answers_aaaa_and_a_is_nodata(server: BuiltinDns) -> None:
    await server.set_address("fd00:0::10")
    aaaa = await udp(server, NAME, "AAAA")
    assert addresses(aaaa) == ["fd00::10"]
    a = await udp(server, NAME, "A")
    assert a.rcode() == dns.rcode.NOERROR
    assert a.answer == []
    assert a.authority[0].rdtype == dns.rdatatype.SOA
    assert await server.get_address() == "fd00::10"


async def test_other_type_is_nodata_with_soa(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    response = await tcp(server, NAME, "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert response.answer == []
    soa = response.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == "home.arpa."
    assert soa[0].minimum == TTL  # negative answers are cached as briefly as positive ones


async def test_other_name_in_zone_is_nxdomain_with_soa(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    for name in ("x.home.arpa", "deeper.nas.home.arpa"):
        response = await udp(server, name)
        assert response.rcode() == dns.rcode.NXDOMAIN
        assert response.flags & dns.flags.AA
        assert response.authority[0].rdtype == dns.rdatatype.SOA


async def test_zone_apex_exists(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    soa = await udp(server, "home.arpa", "SOA")
    assert soa.rcode() == dns.rcode.NOERROR
    assert soa.answer[0].rdtype == dns.rdatatype.SOA
    a = await udp(server, "home.arpa", "A")
    assert a.rcode() == dns.rcode.NOERROR  # NODATA, not NXDOMAIN: the apex exists
    assert a.answer == []


async def test_names_outside_the_zone_are_refused(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    response = await udp(server, "example.com")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert response.answer == []


async def test_names_are_case_insensitive_and_echoed(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    response = await udp(server, "NaS.HOME.arpa")
    assert addresses(response) == ["192.168.1.10"]
    assert response.answer[0].name.to_text() == "NaS.HOME.arpa."  # 0x20-safe


async def test_switch_changes_the_next_answer(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    assert addresses(await udp(server, NAME)) == ["192.168.1.10"]
    assert addresses(await udp(server, NAME)) == ["192.168.1.10"]  # from the cache
    await server.set_address("192.168.1.20")
    assert addresses(await udp(server, NAME)) == ["192.168.1.20"]
    assert await server.get_address() == "192.168.1.20"


async def test_cached_answers_carry_each_query_id(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    wire = bytearray(dns.message.make_query(NAME, "A").to_wire())
    answers = []
    for query_id in (1, 2, 0xBEEF):
        struct.pack_into("!H", wire, 0, query_id)
        answer = server.respond(bytes(wire))
        assert answer is not None
        answers.append(answer)
    assert [struct.unpack_from("!H", a)[0] for a in answers] == [1, 2, 0xBEEF]
    assert answers[0][2:] == answers[2][2:]


async def test_edns_query_gets_edns_answer(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    response = await udp(server, NAME, edns=True)
    assert response.edns == 0
    assert addresses(response) == ["192.168.1.10"]


async def test_malformed_packets_are_dropped_and_service_goes_on(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    good = dns.message.make_query(NAME, "A")
    answer = dns.message.make_response(good).to_wire()  # a response must not be answered
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 40, answer):
            await loop.sock_sendall(sock, junk)
        await loop.sock_sendall(sock, good.to_wire())
        async with asyncio.timeout(TIMEOUT):
            data = await loop.sock_recv(sock, 4096)
    # the first datagram back answers the good query: the junk got no reply
    response = dns.message.from_wire(data)
    assert response.id == good.id
    assert addresses(response) == ["192.168.1.10"]
    assert server.dropped == 5


async def test_tcp_several_queries_on_one_connection(server: BuiltinDns) -> None:
    await server.set_address("192.168.1.10")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        queries = [dns.message.make_query(n, "A") for n in (NAME, "x.home.arpa", NAME)]
        for q in queries:  # pipelined: all sent before any answer is read
            wire = q.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        rcodes = []
        async with asyncio.timeout(TIMEOUT):
            for q in queries:
                size = int.from_bytes(await reader.readexactly(2), "big")
                response = dns.message.from_wire(await reader.readexactly(size))
                assert response.id == q.id
                rcodes.append(response.rcode())
        assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("junk", [b"\x00\x00", b"\x00\x05hello"])
async def test_tcp_garbage_closes_the_connection(server: BuiltinDns, junk: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(junk)
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_tcp_idle_connection_is_closed() -> None:
    backend = BuiltinDns(NAME, TTL, "127.0.0.1", 0, tcp_idle_s=0.05)
    await backend.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
    try:
        writer.write(b"\x00")  # half a length prefix, then silence
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()
        await backend.close()


async def test_close_releases_port_and_tcp_clients() -> None:
    backend = BuiltinDns(NAME, TTL, "127.0.0.1", 0)
    await backend.start()
    port = backend.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await backend.close()
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""  # the open connection was closed too
    writer.close()
    again = BuiltinDns(NAME, TTL, "127.0.0.1", port)
    await again.start()  # the same port binds again
    assert again.port == port
    await again.close()


async def test_port_in_use_is_unavailable(server: BuiltinDns) -> None:
    other = BuiltinDns(NAME, TTL, "127.0.0.1", server.port)
    with pytest.raises(DnsUnavailable, match="in use"):
        await other.start()


async def test_foreign_listen_address_is_rejected() -> None:
    backend = BuiltinDns(NAME, TTL, "192.0.2.1", 0)  # TEST-NET-1: not on this machine
    with pytest.raises(DnsRejected, match="not an address of this machine"):
        await backend.start()


async def test_set_address_rejects_garbage(server: BuiltinDns) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        await server.set_address("nas")
