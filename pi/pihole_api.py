"""One Pi-hole v6 API session, shared by the ``pihole`` DNS backend and the stats collector.

``POST /api/auth`` gives a session id sent as ``X-FTL-SID``; an expired session (401)
logs in again once; ``DELETE /api/auth`` on close gives the seat back (Pi-hole has 16 by
default). A Pi-hole without a password needs no login. Every refusal is raised with what
to do about it: a wrong password, an app password without ``webserver.api.app_sudo``,
no free seats, an untrusted certificate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handshake.errors import EdgepairError, FatalError, TemporaryError

if TYPE_CHECKING:  # pi.config imports this module: keep aiohttp (+11 MB RSS) out of check-config
    import aiohttp

log = logging.getLogger(__name__)

# One API call on the LAN (usually on this very Pi); FTL answers in milliseconds.
REQUEST_TIMEOUT_S = 5.0
# Logging out happens on the way to exit: don't hold a shutdown up for long.
LOGOUT_TIMEOUT_S = 2.0

APP_SUDO_HINT = (
    "the app password lacks webserver.api.app_sudo: enable it in Pi-hole's web interface "
    "(Settings → All settings → Webserver and API → webserver.api.app_sudo) or run "
    "`sudo pihole-FTL --config webserver.api.app_sudo true`, or use the admin password")
SEATS_HINT = (
    "Pi-hole has no free API sessions (webserver.api.max_sessions, 16 by default; each unused "
    "session is held for webserver.session.timeout, 1800 s): a client may be logging in "
    "without logging out (edgepair logs out on exit). Free sessions under Settings → Web "
    "interface / API, raise webserver.api.max_sessions, or wait for them to expire")


class PiholeError(EdgepairError):
    """Pi-hole could not be used; the message says why and what to do."""


class PiholeUnavailable(PiholeError, TemporaryError):
    """Pi-hole can't be reached or is busy: retry later."""


class PiholeRejected(PiholeError, FatalError):
    """Pi-hole refuses us (password, permissions): retrying won't help until someone acts."""


class PiholeSession:
    """Authenticated calls to one Pi-hole; ``logins`` counts successful logins.

    ``rejected_retry_s``: after a refused login, refuse again without asking for this
    long (no login storm), then ask again (a fix in Pi-hole's web interface is picked up).
    ``session``: shared and not closed when given; otherwise created and closed here.
    """

    def __init__(self, url: str, password: str | None, *,
                 session: aiohttp.ClientSession | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S, rejected_retry_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/")
        self._password = password
        self._session = session
        self._own_session = session is None
        self._timeout_s = timeout_s
        self._rejected_retry_s = rejected_retry_s
        self._clock = clock
        self._sid: str | None = None  # None also when Pi-hole has no password
        self._logged_in = False
        self._login_refused: tuple[float, PiholeRejected] | None = None
        self.logins = 0

    async def request(self, method: str, path: str, body: object = None) -> Any:
        """One call; its JSON answer on 2xx, else PiholeRejected or PiholeUnavailable."""
        for attempt in range(2):
            if not self._logged_in and self._password is not None:
                await self.login()
            headers = {"X-FTL-SID": self._sid} if self._sid else {}
            status, answer = await self._call(method, path, body, headers)
            if status == 401 and attempt == 0 and self._password is not None:
                log.debug("Pi-hole session expired; logging in again")
                self._sid, self._logged_in = None, False
                continue
            if status < 300:
                return answer
            if status == 401 and self._password is None:
                raise PiholeRejected("Pi-hole asks for a password: set pihole_password in the "
                                     "secrets file")
            if status == 401:
                raise PiholeRejected(f"Pi-hole at {self.url} rejected a fresh session (401) for "
                                     f"{method} {path}")
            raise self._error(status, answer, f"{method} {path}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def login(self) -> None:
        """Log in (a refusal is remembered for ``rejected_retry_s``)."""
        refused = self._login_refused
        if refused is not None and self._clock() < refused[0]:
            raise refused[1]
        status, answer = await self._call("POST", "/api/auth", {"password": self._password}, {})
        session = answer.get("session") if isinstance(answer, dict) else None
        if status == 200 and isinstance(session, dict) and session.get("valid") is True:
            sid = session.get("sid")
            self._sid = sid if isinstance(sid, str) and sid else None  # None: no password set
            self._logged_in = True
            self._login_refused = None
            self.logins += 1
            # the first login is news; renewing an expired session is routine
            log.log(logging.INFO if self.logins == 1 else logging.DEBUG,
                    "logged in to Pi-hole at %s", self.url)
            return
        if status in (200, 401):
            exc: PiholeError = PiholeRejected(
                f"Pi-hole rejected the password (pihole_password in the secrets file) at "
                f"{self.url}: use the admin password or an app password from Settings → Web "
                f"interface / API")
        elif status == 400:
            exc = PiholeRejected(f"Pi-hole refused the login ({said(status, answer)}): with "
                                 f"two-factor authentication on, use an app password")
        else:
            exc = self._error(status, answer, "POST /api/auth")
        if isinstance(exc, PiholeRejected) and self._rejected_retry_s > 0:
            self._login_refused = (self._clock() + self._rejected_retry_s, exc)
        raise exc

    async def close(self) -> None:
        """Log out, freeing the API seat; never raises."""
        import aiohttp  # noqa: PLC0415 - see TYPE_CHECKING above

        sid, self._sid, self._logged_in = self._sid, None, False
        try:
            if sid is not None and self._session is not None:
                try:
                    async with (asyncio.timeout(LOGOUT_TIMEOUT_S),
                                self._session.delete(f"{self.url}/api/auth",
                                                     headers={"X-FTL-SID": sid}) as response):
                        log.debug("logged out of Pi-hole: HTTP %d", response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.debug("could not log out of Pi-hole: %s", _describe(exc))
        finally:
            if self._own_session and self._session is not None:
                await self._session.close()
                self._session = None

    async def _call(self, method: str, path: str, body: object,
                    headers: dict[str, str]) -> tuple[int, Any]:
        import aiohttp  # noqa: PLC0415 - see TYPE_CHECKING above

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with (asyncio.timeout(self._timeout_s),
                        self._session.request(method, self.url + path, json=body,
                                              headers=headers) as response):
                try:
                    return response.status, json.loads(await response.read())
                except ValueError:
                    return response.status, None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise PiholeRejected(f"Pi-hole at {self.url}: certificate not trusted ({exc}); use "
                                 f"http://127.0.0.1 when Pi-hole runs on this Pi") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PiholeUnavailable(f"Pi-hole at {self.url} unreachable: "
                                    f"{_describe(exc)}") from exc

    def _error(self, status: int, answer: Any, what: str) -> PiholeError:
        text = said(status, answer)
        if status == 403:
            return PiholeRejected(f"Pi-hole refused {what} ({text}): {APP_SUDO_HINT}")
        if status == 429 and _error_key(answer) == "api_seats_exceeded":
            return PiholeUnavailable(f"{SEATS_HINT} ({text})")
        if status == 429 or status >= 500:
            return PiholeUnavailable(f"Pi-hole at {self.url} is busy or failing ({what}: {text})")
        return PiholeRejected(f"Pi-hole at {self.url} rejected {what} ({text})")


def said(status: int, answer: Any) -> str:
    """Pi-hole's error in one line: ``HTTP 403 forbidden: message; hint``."""
    error = _error_fields(answer)
    detail = "; ".join(str(error[k]) for k in ("message", "hint") if error.get(k))
    return f"HTTP {status} {_error_key(answer)}" + (f": {detail}" if detail else "")


def _error_fields(answer: Any) -> dict[str, Any]:
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, dict) else {}


def _error_key(answer: Any) -> str:
    return str(_error_fields(answer).get("key") or "?")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
