"""``[wake_on_demand]`` in pi.toml: which demand wakes the host, from whom, and when not.

Light on purpose (check-config imports it): Structs and parsers only.
"""

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Check, Parse, Section

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# RFC 1918, RFC 6598 (CGNAT, often a home's second router), IPv6 ULA and link-local.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                  "fc00::/7", "fe80::/10")
_SPAN_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
MAX_PORTS = 16


@dataclass(frozen=True, slots=True)
class Span:
    """A daily span of local time in minutes after midnight; may cross midnight."""

    start: int
    end: int

    def covers(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return (f"{self.start // 60:02d}:{self.start % 60:02d}-"
                f"{self.end // 60:02d}:{self.end % 60:02d}")


def parse_networks(value: object) -> tuple[Network, ...]:
    """``["192.168.1.0/24", "10.0.0.7"]`` → networks; a bare address is a /32 or /128."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return tuple(ipaddress.ip_network(v.strip(), strict=True) for v in value)


def parse_spans(value: object) -> tuple[Span, ...]:
    """``"01:00-06:00"`` or a list of them → spans (an empty span is refused)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise TypeError(value)
    spans = []
    for item in items:
        match = _SPAN_RE.match(item.strip())
        if match is None:
            raise ValueError(item)
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if (h1, m1) == (h2, m2):
            raise ValueError(item)
        spans.append(Span(h1 * 60 + m1, h2 * 60 + m2))
    return tuple(spans)


def _ports_ok(ports: tuple[int, ...]) -> bool:
    return len(ports) <= MAX_PORTS and len(set(ports)) == len(ports) and all(
        0 < p < 65536 for p in ports)


_PORTS = Check(_ports_ok, f"distinct TCP ports 1-65535, at most {MAX_PORTS}")
Networks = Annotated[tuple[Network, ...], Parse(
    parse_networks, "a list of CIDR networks like \"192.168.1.0/24\" (host bits zero)",
    "list of CIDR", show=lambda v: "[" + ", ".join(f'"{n}"' for n in v) + "]")]


class DemandConfig(Section, frozen=True, kw_only=True):
    dns: Annotated[bool, Meta(description="a query for dns.name from an allowed client wakes "
                                          "the host (dns.backend builtin)")] = False
    ports: Annotated[tuple[int, ...], _PORTS, Meta(
        description="TCP ports the Pi listens on at pi.address while the host is not online; "
                    "a connection wakes it")] = ()
    http_ports: Annotated[tuple[int, ...], _PORTS, Meta(
        description="listened on too, answering a \"waking …\" page that sends the browser "
                    "on to the host")] = ()
    clients: Annotated[Networks, Meta(description="only these clients wake the host")] = \
        tuple(ipaddress.ip_network(n) for n in PRIVATE_RANGES)
    deny: Annotated[Networks, Meta(description="never these (the TV that polls the NAS)")] = ()
    min_interval_s: Annotated[float, Meta(ge=0, le=86400,
                                          description="between two demand wakes")] = 600.0
    quiet_hours: Annotated[tuple[Span, ...], Parse(
        parse_spans, "local time spans like \"01:00-06:00\" (a string or a list)", "spans",
        show=lambda v: "[" + ", ".join(f'"{s}"' for s in v) + "]"),
        Meta(description="no demand wakes then ([schedule] timezone)")] = ()

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every port the listener holds: ``ports`` and ``http_ports``."""
        return tuple(sorted({*self.ports, *self.http_ports}))

    @property
    def enabled(self) -> bool:
        return self.dns or bool(self.listen_ports)

    def problems(self) -> Iterator[tuple[str, str]]:
        both = sorted(set(self.ports) & set(self.http_ports))
        if both:
            yield ("http_ports", f"expected ports not also in ports (an HTTP port is listened "
                   f"on already), got {', '.join(map(str, both))} in both")
        if len(self.listen_ports) > MAX_PORTS:
            yield ("http_ports", f"expected at most {MAX_PORTS} ports with ports, got "
                   f"{len(self.listen_ports)}")
