"""DNS failover: the one name answers the host's address or the Pi's, behind one small interface.

Backends: ``builtin`` (an authoritative responder in this process), ``pihole`` (Pi-hole v6
REST API) and ``hostsfile`` (an addn-hosts file plus SIGHUP to dnsmasq). Each module is
imported only when configured, so the api daemon loads dnspython only for ``builtin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from handshake.errors import ConfigError, FatalError, TemporaryError

if TYPE_CHECKING:
    import aiohttp

    from pi.config import DnsSection
    from pi.config import PiSecrets as Secrets


class DnsBackend(Protocol):
    """Makes ``dns.name`` answer one address; every call is one atomic change."""

    async def start(self) -> None:
        """Open sockets / log in."""

    async def set_address(self, address: str) -> None:
        """Make the name answer ``address`` (IPv4 → A, IPv6 → AAAA); idempotent."""

    async def get_address(self) -> str | None:
        """What is really served now; None when nothing (or more than one address) is."""

    async def close(self) -> None:
        """Close sockets / log out."""


@runtime_checkable
class QueryWatcher(Protocol):
    """A backend that sees the queries itself (builtin): wake on demand listens to it.

    ``on_query(peer, subnet_client)`` runs for every query for the name, on the event loop.
    """

    on_query: Callable[[str, str | None], None] | None


class DnsUnavailable(TemporaryError):
    """The DNS backend can't be reached or is busy: retry later."""


class DnsRejected(FatalError):
    """The DNS backend refuses us (credentials, permissions): retrying won't help."""


def make_backend(dns: DnsSection, secrets: Secrets, *,
                 session: aiohttp.ClientSession | None = None) -> DnsBackend:
    """The backend ``dns.backend`` names; ``session`` is shared (not closed) when given."""
    # Imports are local so a daemon loads only the backend it runs (dnspython: +2.4 MB RSS).
    if dns.backend == "builtin":
        from pi.dns.builtin import BuiltinDns  # noqa: PLC0415 - see above

        host, port = dns.listen
        return BuiltinDns(dns.name, dns.ttl_s, host, port)
    if dns.backend == "pihole":
        from pi.dns.pihole import PiholeDns  # noqa: PLC0415 - see above

        if not secrets.pihole_password:
            raise ConfigError(["pihole_password: required in the secrets file when "
                               "dns.backend = \"pihole\" (the Pi-hole admin or app password)"])
        return PiholeDns(dns.name, dns.pihole_url, secrets.pihole_password, session=session)
    if dns.backend == "hostsfile":
        from pi.dns.hostsfile import HostsFileDns  # noqa: PLC0415 - see above

        if dns.hosts_file is None:
            raise ConfigError(["dns.hosts_file: required when dns.backend = \"hostsfile\""])
        return HostsFileDns(dns.name, dns.hosts_file, dns.dnsmasq_pidfile)
    raise ConfigError([f"dns.backend: expected builtin, pihole or hostsfile, got {dns.backend!r}"])


def find_address(entries: list[str], name: str) -> str | None:
    """The one address ``name`` has among hosts-file ``"IP NAME..."`` entries; None for 0 or 2+."""
    found = {fields[0] for fields in (entry.split() for entry in entries)
             if len(fields) >= 2 and any(same_name(h, name) for h in fields[1:])}
    return found.pop() if len(found) == 1 else None


def same_name(host: str, name: str) -> bool:
    """DNS names compare case-insensitively, with or without the trailing dot."""
    return host.lower().rstrip(".") == name.lower().rstrip(".")
