"""What the builtin responder refuses before doing any work: big or multi-question queries,
and TCP connections beyond a fair share (issue #10; RFC 7766 §6.2, RFC 9619).

Pure functions: the responder in ``builtin.py`` performs what they decide.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

# A query for one name: 12 header + 255 name + 4 + an EDNS OPT (11 + cookie, ECS, padding to
# 128-byte blocks) fits with room to spare; 512 is also DNS's classic UDP size.
MAX_QUERY_BYTES = 512
# RFC 7766 §6.2.2: "limits on the number of concurrent TCP connections". A forwarder opens
# a few (dnsmasq runs at most 20 TCP children); more than this is one client's greed.
MAX_TCP_PER_CLIENT = 16
# All TCP connections at once, so a crowd of clients can't exhaust the Pi's sockets.
MAX_TCP_CONNECTIONS = 64

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_QR = 0x8000
_OPCODE_RD = 0x7900  # the flags a response echoes: opcode and RD (RFC 1035 §4.1.1)
_FORMERR = 1

K = TypeVar("K", bound=Hashable)


class Verdict(enum.Enum):
    """What the header alone says about a datagram."""

    PARSE = "parse"  # worth parsing
    DROP = "drop"  # too big, too short or a response: no answer at all
    FORMERR = "formerr"  # not exactly one question: a 12-byte FORMERR, nothing parsed


def screen(data: bytes) -> Verdict:
    """Judge a query by its size and 12-byte header, in constant time."""
    if len(data) > MAX_QUERY_BYTES or len(data) < HEADER.size:
        return Verdict.DROP
    _, flags, qdcount, _, _, _ = HEADER.unpack_from(data)
    if flags & _QR:
        return Verdict.DROP  # a response, not a query: answering could start a loop
    if qdcount != 1:
        # RFC 9619: QDCOUNT > 1 "MUST be treated as an incorrectly formatted message" and
        # answered FORMERR; 12 bytes back is never an amplifier, and the client stops retrying.
        return Verdict.FORMERR
    return Verdict.PARSE


def formerr(data: bytes) -> bytes:
    """A header-only FORMERR answer to ``data`` (at least 12 bytes): its id, opcode and RD."""
    query_id, flags, _, _, _, _ = HEADER.unpack_from(data)
    return HEADER.pack(query_id, _QR | (flags & _OPCODE_RD) | _FORMERR, 0, 0, 0, 0)


@dataclass
class Slot:
    """One open TCP connection: who opened it and when it last completed a query."""

    client: str  # the source IP
    last_query: float  # loop time of the accept or of the last complete query


@dataclass(frozen=True)
class Admission(Generic[K]):
    """Whether to accept a new connection, and which open one to close to make room."""

    accept: bool
    evict: K | None = None


def admit(slots: Mapping[K, Slot], client: str, *,
                       per_client: int = MAX_TCP_PER_CLIENT,
                       total: int = MAX_TCP_CONNECTIONS) -> Admission[K]:
    """A new connection from ``client``: refused over its own cap; when all are taken, the
    oldest idle connection of the heaviest client makes room (RFC 7766 §6.2.3)."""
    per: dict[str, list[tuple[float, K]]] = {}
    for key, slot in slots.items():
        per.setdefault(slot.client, []).append((slot.last_query, key))
    if len(per.get(client, ())) >= per_client:
        return Admission(accept=False)
    if len(slots) < total:
        return Admission(accept=True)
    # Ties go to the client idle longest: its connections are the least likely to be used.
    heaviest = max(per.values(), key=lambda own: (len(own), -min(t for t, _ in own)))
    _, oldest = min(heaviest, key=lambda pair: pair[0])
    return Admission(accept=True, evict=oldest)
