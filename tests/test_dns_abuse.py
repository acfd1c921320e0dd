"""Issue #10: one hostile client can't stall or lock out the builtin responder (real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from pi.dns.builtin import BuiltinDns
from pi.dns.limits import MAX_QUERY_BYTES, MAX_TCP_PER_CLIENT, Slot, Verdict, admit, screen
from tests.test_dns_builtin import NAME, TIMEOUT, TTL, addresses

ADDRESS = "192.168.1.10"
HOSTILE = "127.0.0.5"
LEGIT = "127.0.0.6"
OTHER = "127.0.0.7"
IDLE_S = 1.0  # the TCP idle timeout, patched down (opening 70 connections must fit in it)


@pytest.fixture
async def server() -> AsyncIterator[BuiltinDns]:
    backend = BuiltinDns(NAME, TTL, "127.0.0.1", 0, tcp_idle_s=IDLE_S)
    await backend.start()
    await backend.set_address(ADDRESS)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every message dnspython parses from now on."""
    sizes: list[int] = []
    real: Callable[..., Any] = dns.message.from_wire

    def counting(wire: bytes, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(wire))
        return real(wire, *args, **kwargs)

    monkeypatch.setattr(dns.message, "from_wire", counting)
    return sizes


def multi_question(query_id: int, questions: int) -> bytes:
    """A query asking ``NAME`` ``questions`` times: the name once, then compression pointers."""
    first = dns.message.make_query(NAME, "A").to_wire()[12:]
    header = struct.pack("!HHHHHH", query_id, 0x0100, questions, 0, 0, 0)
    return header + first + (b"\xc0\x0c" + struct.pack("!HH", 1, 1)) * (questions - 1)


async def test_big_and_multi_question_udp_queries_are_refused_unparsed(
        server: BuiltinDns, parses: list[int]) -> None:
    big = multi_question(0xB16, 8000)  # ~48 KB: ~100 ms of dnspython before the fix
    small = multi_question(0x5A11, 2)  # small enough to parse, but two questions
    assert len(big) > 40_000
    assert len(small) < MAX_QUERY_BYTES
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        for round_ in range(10):
            good = dns.message.make_query(NAME, "A")
            for packet in (big, small, good.to_wire()):
                await loop.sock_sendall(sock, packet)
            async with asyncio.timeout(TIMEOUT):  # the legitimate answer comes all the same
                formerr = dns.message.from_wire(await loop.sock_recv(sock, 65535))
                answer = dns.message.from_wire(await loop.sock_recv(sock, 65535))
            assert (formerr.id, formerr.rcode(), formerr.question) == (0x5A11, dns.rcode.FORMERR, [])
            assert answer.id == good.id, f"round {round_}: the big query got an answer"
            assert addresses(answer) == [ADDRESS]
    assert server.screened == 20
    assert server.dropped == 10  # the big ones: no answer at all
    # dnspython parsed the first good query (later ones come from the cache) and our own
    # reads of the answers here, never a hostile query
    assert max(parses) < MAX_QUERY_BYTES
    assert len(parses) == 1 + 20


async def open_hostile(port: int, count: int) -> list[tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]]:
    """``count`` connections from HOSTILE, each asking once; those the server kept."""
    query = dns.message.make_query(NAME, "A").to_wire()
    kept = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(HOSTILE, 0))
        writer.write(len(query).to_bytes(2, "big") + query)
        try:
            async with asyncio.timeout(TIMEOUT):
                size = int.from_bytes(await reader.readexactly(2), "big")
                await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            continue
        kept.append((reader, writer))
    return kept


async def closed(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


async def test_one_tcp_client_cannot_hold_every_connection(server: BuiltinDns) -> None:
    kept = await open_hostile(server.port, 70)  # more than all 64 connections
    assert len(kept) == MAX_TCP_PER_CLIENT
    assert server.tcp_refused == 70 - MAX_TCP_PER_CLIENT

    async def trickle() -> None:  # a length prefix, then a byte of the message now and then
        for chunk in (b"\x00", b"\x40", *[b"\x00"] * 40):
            for _, writer in kept:
                with contextlib.suppress(ConnectionError):
                    writer.write(chunk)
            await asyncio.sleep(IDLE_S / 4)

    trickling = asyncio.get_running_loop().create_task(trickle())
    try:
        query = dns.message.make_query(NAME, "A")
        answer = await dns.asyncquery.tcp(query, "127.0.0.1", port=server.port,
                                          source=LEGIT, timeout=TIMEOUT)
        assert addresses(answer) == [ADDRESS]
        # partial bytes don't count as activity: every trickler is closed by the idle timeout
        async with asyncio.timeout(3 * IDLE_S):
            await asyncio.gather(*(closed(reader) for reader, _ in kept))
        assert not trickling.done()  # still trickling when the last was closed
    finally:
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
        for _, writer in kept:
            writer.close()


async def test_full_tcp_closes_the_heaviest_clients_oldest_idle_connection() -> None:
    backend = BuiltinDns(NAME, TTL, "127.0.0.1", 0, tcp_idle_s=10 * TIMEOUT,
                         tcp_per_client=3, tcp_total=4)
    await backend.start()
    await backend.set_address(ADDRESS)
    hostile = await open_hostile(backend.port, 4)  # the 4th is over its own cap of 3
    other: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        assert (len(hostile), backend.tcp_refused) == (3, 1)
        other.append(await asyncio.open_connection("127.0.0.1", backend.port,
                                                   local_addr=(OTHER, 0)))
        query = dns.message.make_query(NAME, "A")
        answer = await dns.asyncquery.tcp(query, "127.0.0.1", port=backend.port,
                                          source=LEGIT, timeout=TIMEOUT)
        assert addresses(answer) == [ADDRESS]  # the newcomer got a connection
        assert backend.tcp_evicted == 1
        async with asyncio.timeout(TIMEOUT):
            await closed(hostile[0][0])  # the heaviest client's first (longest idle)
        for reader, writer in [*hostile[1:], *other]:  # the others still answer
            wire = query.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            async with asyncio.timeout(TIMEOUT):
                size = int.from_bytes(await reader.readexactly(2), "big")
                assert addresses(dns.message.from_wire(await reader.readexactly(size))) == \
                    [ADDRESS]
    finally:
        for _, writer in [*hostile, *other]:
            writer.close()
        await backend.close()


async def test_tcp_length_prefix_too_big_closes_unread(server: BuiltinDns) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"\xff\xff")  # 65535 bytes announced; the idle timeout is not awaited
        async with asyncio.timeout(IDLE_S / 2):
            assert await reader.read() == b""
        assert server.screened == 1
    finally:
        writer.close()


async def test_first_refusal_warns_and_repeats_are_debug(
        server: BuiltinDns, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pi.dns.builtin")
    for _ in range(3):
        assert server.respond(b"\x00" * (MAX_QUERY_BYTES + 1)) is None
    levels = [r.levelno for r in caplog.records if "refused" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


@pytest.mark.parametrize(("data", "verdict"), [
    (b"\x00" * 11, Verdict.DROP),
    (multi_question(1, 1), Verdict.PARSE),
    (multi_question(1, 1)[:2] + b"\x81\x00" + multi_question(1, 1)[4:], Verdict.DROP),  # QR
    (multi_question(1, 2), Verdict.FORMERR),
    (struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0), Verdict.FORMERR),
    (multi_question(1, 1) + b"\x00" * MAX_QUERY_BYTES, Verdict.DROP),
])
def test_screen_judges_by_size_and_header(data: bytes, verdict: Verdict) -> None:
    assert screen(data) is verdict


def test_admit_prefers_the_heaviest_clients_longest_idle_connection() -> None:
    slots = {"a1": Slot(HOSTILE, 3.0), "a2": Slot(HOSTILE, 1.0), "b1": Slot(OTHER, 0.5)}
    assert admit(slots, LEGIT, per_client=2, total=3).evict == "a2"
    assert not admit(slots, HOSTILE, per_client=2, total=4).accept  # over its own cap
    assert admit(slots, LEGIT, per_client=2, total=4).evict is None  # room left
    tied = {"a": Slot(HOSTILE, 2.0), "b": Slot(OTHER, 1.0)}
    assert admit(tied, LEGIT, per_client=2, total=2).evict == "b"  # idle longest
