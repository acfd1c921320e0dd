"""Pi-hole v6 backend: the name is one ``"IP NAME"`` entry of Pi-hole's ``dns.hosts``.

The whole array is replaced in one ``PATCH /api/config``, so there is never a moment
without a record. Pi-hole serves local records with TTL 0 unless dnsmasq's ``local-ttl``
is set: add ``local-ttl=5`` to ``misc.dnsmasq_lines`` to match ``dns.ttl_s``. An app
password needs ``webserver.api.app_sudo = true`` to change the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from pi.dns import DnsRejected, DnsUnavailable, find_address, same_name
from pi.pihole_api import REQUEST_TIMEOUT_S, PiholeRejected, PiholeSession, PiholeUnavailable

log = logging.getLogger(__name__)

# After a rejection (password, app_sudo) ask again this rarely: no login storm, and a
# fix made in Pi-hole's web interface is still picked up without a restart.
REJECTED_RETRY_S = 300.0


class PiholeDns:
    """Keeps ``name`` pointed at one address in Pi-hole's local DNS records."""

    def __init__(self, name: str, url: str, password: str, *,
                 session: aiohttp.ClientSession | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name.lower().rstrip(".")
        self.url = url.rstrip("/")
        self._api = PiholeSession(url, password, session=session, timeout_s=timeout_s,
                                  rejected_retry_s=REJECTED_RETRY_S, clock=clock)
        self._clock = clock
        self._patch_refused: tuple[float, DnsRejected] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Log in; a failure is logged, not raised: WoL and the dashboard run on without DNS."""
        async with self._lock:
            try:
                with _dns_errors():
                    await self._api.login()
            except DnsUnavailable as exc:
                log.warning("%s; will retry", exc)
            except DnsRejected as exc:
                log.error("%s", exc)

    async def set_address(self, address: str) -> None:
        text = str(ipaddress.ip_address(address))
        async with self._lock:
            hosts = await self._get_hosts()
            wanted = rewrite_hosts(hosts, self.name, text)
            if wanted == hosts:
                log.debug("Pi-hole already answers %s for %s", text, self.name)
                return
            refused = self._patch_refused
            if refused is not None and self._clock() < refused[0]:
                raise refused[1]
            body = {"config": {"dns": {"hosts": wanted}}}
            try:
                with _dns_errors():
                    await self._api.request("PATCH", "/api/config", body)
            except DnsRejected as exc:
                self._patch_refused = (self._clock() + REJECTED_RETRY_S, exc)
                raise
            self._patch_refused = None
            log.info("Pi-hole now answers %s for %s", text, self.name)

    async def get_address(self) -> str | None:
        async with self._lock:
            return find_address(await self._get_hosts(), self.name)

    async def close(self) -> None:
        async with self._lock:
            await self._api.close()

    async def _get_hosts(self) -> list[str]:
        with _dns_errors():
            body: Any = await self._api.request("GET", "/api/config/dns/hosts")
        try:
            hosts = body["config"]["dns"]["hosts"]
        except (KeyError, TypeError):
            hosts = None
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise DnsUnavailable(f"Pi-hole at {self.url} sent no dns.hosts array: {body!r:.200}")
        return hosts


@contextlib.contextmanager
def _dns_errors() -> Iterator[None]:
    """Pi-hole's refusals as the DNS backends' errors (the hostloop knows only those)."""
    try:
        yield
    except PiholeUnavailable as exc:
        raise DnsUnavailable(str(exc)) from exc
    except PiholeRejected as exc:
        raise DnsRejected(str(exc)) from exc


def rewrite_hosts(hosts: list[str], name: str, address: str) -> list[str]:
    """``hosts`` with ``name`` on ``address`` only; other names keep their entries."""
    out: list[str] = []
    placed = False
    for entry in hosts:
        fields = entry.split()
        if len(fields) < 2 or not any(same_name(h, name) for h in fields[1:]):
            out.append(entry)
            continue
        others = [h for h in fields[1:] if not same_name(h, name)]
        if others:
            out.append(" ".join([fields[0], *others]))
        if not placed:  # the new entry takes the old one's place, so no change is no change
            out.append(f"{address} {name}")
            placed = True
    if not placed:
        out.append(f"{address} {name}")
    return out
