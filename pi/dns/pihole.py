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
from collections.abc import Callable
from typing import Any

import aiohttp

from pi.dns import DnsRejected, DnsUnavailable, find_address, same_name

log = logging.getLogger(__name__)

# One API call on the LAN (usually on this very Pi); FTL answers in milliseconds.
REQUEST_TIMEOUT_S = 5.0
# Logging out happens on the way to exit: don't hold a shutdown up for long.
LOGOUT_TIMEOUT_S = 2.0
# After a rejection (password, app_sudo) ask again this rarely: no login storm, and a
# fix made in Pi-hole's web interface is still picked up without a restart.
REJECTED_RETRY_S = 300.0

APP_SUDO_HINT = (
    "the app password lacks webserver.api.app_sudo: enable it in Pi-hole's web interface "
    "(Settings → All settings → Webserver and API → webserver.api.app_sudo) or run "
    "`sudo pihole-FTL --config webserver.api.app_sudo true`, or use the admin password")
SEATS_HINT = (
    "Pi-hole has no free API sessions (webserver.api.max_sessions, 16 by default; each unused "
    "session is held for webserver.session.timeout, 1800 s): a client may be logging in "
    "without logging out (edgepair logs out on exit). Free sessions under Settings → Web "
    "interface / API, raise webserver.api.max_sessions, or wait for them to expire")


class PiholeDns:
    """Keeps ``name`` pointed at one address in Pi-hole's local DNS records."""

    def __init__(self, name: str, url: str, password: str, *,
                 session: aiohttp.ClientSession | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name.lower().rstrip(".")
        self.url = url.rstrip("/")
        self._password = password
        self._session = session
        self._own_session = session is None
        self._timeout_s = timeout_s
        self._clock = clock
        self._sid: str | None = None
        self._logged_in = False
        self._logins = 0
        self._rejected: dict[str, tuple[float, DnsRejected]] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Log in; a failure is logged, not raised: WoL and the dashboard run on without DNS."""
        async with self._lock:
            try:
                await self._login()
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
            self._check_rejected("patch")
            body = {"config": {"dns": {"hosts": wanted}}}
            try:
                await self._request("PATCH", "/api/config", body)
            except DnsRejected as exc:
                self._rejected["patch"] = (self._clock() + REJECTED_RETRY_S, exc)
                raise
            self._rejected.pop("patch", None)
            log.info("Pi-hole now answers %s for %s", text, self.name)

    async def get_address(self) -> str | None:
        async with self._lock:
            return find_address(await self._get_hosts(), self.name)

    async def close(self) -> None:
        async with self._lock:
            try:
                if self._sid is not None and self._session is not None:
                    await self._logout(self._session, self._sid)
            finally:
                self._sid, self._logged_in = None, False
                if self._own_session and self._session is not None:
                    await self._session.close()
                    self._session = None

    # -- API ---------------------------------------------------------------------------

    async def _get_hosts(self) -> list[str]:
        body = await self._request("GET", "/api/config/dns/hosts")
        try:
            hosts = body["config"]["dns"]["hosts"]
        except (KeyError, TypeError):
            hosts = None
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise DnsUnavailable(f"Pi-hole at {self.url} sent no dns.hosts array: {body!r:.200}")
        return hosts

    async def _request(self, method: str, path: str, body: object = None) -> Any:
        """One authenticated call; an expired session (401) logs in again once."""
        for attempt in range(2):
            if not self._logged_in:
                await self._login()
            headers = {"X-FTL-SID": self._sid} if self._sid else {}
            status, answer = await self._call(method, path, body, headers)
            if status == 401 and attempt == 0:
                log.debug("Pi-hole session expired; logging in again")
                self._sid, self._logged_in = None, False
                continue
            if status < 300:
                return answer
            raise self._error(status, answer, f"{method} {path}")
        raise DnsRejected(f"Pi-hole at {self.url} rejected a fresh session (401) for "
                          f"{method} {path}")

    async def _login(self) -> None:
        self._check_rejected("login")
        status, answer = await self._call("POST", "/api/auth", {"password": self._password}, {})
        session = answer.get("session") if isinstance(answer, dict) else None
        if status == 200 and isinstance(session, dict) and session.get("valid") is True:
            sid = session.get("sid")
            self._sid = sid if isinstance(sid, str) and sid else None  # None: no password set
            self._logged_in = True
            self._rejected.pop("login", None)
            self._logins += 1
            # the first login is news; renewing an expired session is routine
            log.log(logging.INFO if self._logins == 1 else logging.DEBUG,
                    "logged in to Pi-hole at %s", self.url)
            return
        if status in (200, 401):
            exc = DnsRejected(f"Pi-hole rejected the password (pihole_password in the secrets "
                              f"file) at {self.url}: use the admin password or an app password "
                              f"from Settings → Web interface / API")
        elif status == 400:
            exc = DnsRejected(f"Pi-hole refused the login ({_said(status, answer)}): with "
                              f"two-factor authentication on, use an app password")
        else:
            error = self._error(status, answer, "POST /api/auth")
            if not isinstance(error, DnsRejected):
                raise error
            exc = error
        self._rejected["login"] = (self._clock() + REJECTED_RETRY_S, exc)
        raise exc

    async def _logout(self, session: aiohttp.ClientSession, sid: str) -> None:
        try:
            async with (asyncio.timeout(LOGOUT_TIMEOUT_S),
                        session.delete(f"{self.url}/api/auth",
                                       headers={"X-FTL-SID": sid}) as response):
                log.debug("logged out of Pi-hole: HTTP %d", response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("could not log out of Pi-hole: %s", _describe(exc))

    async def _call(self, method: str, path: str, body: object,
                    headers: dict[str, str]) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self.url}{path}"
        try:
            async with (asyncio.timeout(self._timeout_s),
                        self._session.request(method, url, json=body, headers=headers) as response):
                with contextlib.suppress(aiohttp.ContentTypeError, ValueError):
                    return response.status, await response.json()
                return response.status, None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise DnsRejected(f"Pi-hole at {self.url}: certificate not trusted ({exc}); use "
                              f"http://127.0.0.1 when Pi-hole runs on this Pi") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DnsUnavailable(f"Pi-hole at {self.url} unreachable: {_describe(exc)}") from exc

    def _error(self, status: int, answer: Any, what: str) -> Exception:
        said = _said(status, answer)
        if status == 403:
            return DnsRejected(f"Pi-hole refused {what} ({said}): {APP_SUDO_HINT}")
        if status == 429 and _error_key(answer) == "api_seats_exceeded":
            return DnsUnavailable(f"{SEATS_HINT} ({said})")
        if status == 429 or status >= 500:
            return DnsUnavailable(f"Pi-hole at {self.url} is busy or failing ({what}: {said})")
        return DnsRejected(f"Pi-hole at {self.url} rejected {what} ({said})")

    def _check_rejected(self, what: str) -> None:
        entry = self._rejected.get(what)
        if entry is not None and self._clock() < entry[0]:
            raise entry[1]


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


def _error_fields(answer: Any) -> dict[str, Any]:
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, dict) else {}


def _error_key(answer: Any) -> str:
    return str(_error_fields(answer).get("key") or "?")


def _said(status: int, answer: Any) -> str:
    """Pi-hole's error in one line: ``HTTP 403 forbidden: message; hint``."""
    error = _error_fields(answer)
    detail = "; ".join(str(error[k]) for k in ("message", "hint") if error.get(k))
    return f"HTTP {status} {_error_key(answer)}" + (f": {detail}" if detail else "")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
