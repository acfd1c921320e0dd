"""A fake Pi-hole v6 (FTL 6.x REST API) for loopback tests: ``FakePihole().app()``.

Speaks the documented shapes: ``POST/DELETE /api/auth`` (``session.sid``, header
``X-FTL-SID``), ``GET /api/config[/path]``, ``PATCH /api/config``, ``GET
/api/stats/summary``; errors as ``{"error": {"key", "message", "hint"}}``. Switches:
``password`` (a wrong one is just a different one), ``app_sudo=False`` (the app password
may not change config → 403), ``max_sessions=0`` (seats exhausted → 429),
``expire_sessions()``. Counters: ``logins``, ``logouts``, ``patches`` and ``requests``.
"""

from __future__ import annotations

import copy
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FORBIDDEN = {
    "key": "forbidden",
    "message": "Unable to change configuration (read-only)",
    "hint": "The current app session is not authorized to change Pi-hole's configuration. "
            "Set webserver.api.app_sudo=true to allow it",
}


def _default_config() -> dict[str, Any]:
    return {
        "dns": {
            "upstreams": ["9.9.9.9", "149.112.112.112"],
            "hosts": ["192.168.1.1 router.lan", "192.168.1.5 printer.lan"],
            "domain": "lan",
        },
        "misc": {"dnsmasq_lines": []},
    }


def _default_summary() -> dict[str, Any]:
    return {
        "queries": {"total": 29476, "blocked": 3081, "percent_blocked": 10.452571868896484,
                    "unique_domains": 2187, "forwarded": 17433, "cached": 8871,
                    "frequency": 1.37, "types": {"A": 17843, "AAAA": 9201, "HTTPS": 2432},
                    "status": {"GRAVITY": 3081, "FORWARDED": 17433, "CACHE": 8871},
                    "replies": {"NODATA": 2210, "NXDOMAIN": 412, "IP": 25103}},
        "clients": {"active": 9, "total": 14},
        "gravity": {"domains_being_blocked": 157342, "last_update": 1731830400},
    }


@dataclass
class FakePihole:
    """State of the fake; tests flip the switches and read the counters."""

    password: str | None = "correct horse"  # None: no password set, no login needed
    app_password: bool = True  # the password is an app password (matters for app_sudo)
    app_sudo: bool = True
    max_sessions: int = 16
    config: dict[str, Any] = field(default_factory=_default_config)
    summary: dict[str, Any] = field(default_factory=_default_summary)
    session_timeout_s: float = 1800.0
    sessions: dict[str, float] = field(default_factory=dict)  # sid → valid until
    logins: int = 0
    logouts: int = 0
    patches: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def hosts(self) -> list[str]:
        return list(self.config["dns"]["hosts"])

    @hosts.setter
    def hosts(self, value: list[str]) -> None:
        """Change dns.hosts behind the client's back (as the web interface would)."""
        self.config["dns"]["hosts"] = list(value)

    def expire_sessions(self) -> None:
        """Every session times out now (as after webserver.session.timeout)."""
        self.sessions.clear()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/api/auth", self._login)
        app.router.add_delete("/api/auth", self._logout)
        app.router.add_get("/api/config", self._get_config)
        app.router.add_get("/api/config/{path:.+}", self._get_config)
        app.router.add_patch("/api/config", self._patch_config)
        app.router.add_get("/api/stats/summary", self._summary)
        return app

    # -- plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    def _sid(self, request: web.Request) -> str | None:
        return (request.headers.get("X-FTL-SID") or request.headers.get("sid")
                or request.query.get("sid"))

    def _authorized(self, request: web.Request) -> bool:
        if self.password is None:
            return True
        sid = self._sid(request)
        now = time.monotonic()
        if sid is None or self.sessions.get(sid, 0.0) < now:
            return False
        self.sessions[sid] = now + self.session_timeout_s  # each use extends the session
        return True

    def _unauthorized(self) -> web.Response:
        return _error(401, "unauthorized", "Unauthorized")

    @staticmethod
    def _session(valid: bool, sid: str | None, validity: int, message: str) -> dict[str, Any]:
        return {"session": {"valid": valid, "totp": False, "sid": sid,
                            "csrf": secrets.token_urlsafe(16) if sid else None,
                            "validity": validity, "message": message}}

    # -- endpoints ---------------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_request", "Invalid JSON payload")
        password = body.get("password") if isinstance(body, dict) else None
        if password is None:
            return _error(400, "bad_request", "No password found in JSON payload")
        if not isinstance(password, str):
            return _error(400, "bad_request", "Field password has to be of type 'string'")
        if self.password is None:
            return _json(self._session(True, None, -1, "no password set"))
        if password != self.password:
            return _json(self._session(False, None, -1, "password incorrect"),
                                     status=401)
        now = time.monotonic()
        self.sessions = {sid: until for sid, until in self.sessions.items() if until >= now}
        if len(self.sessions) >= self.max_sessions:
            return _error(429, "api_seats_exceeded", "API seats exceeded",
                               "increase webserver.api.max_sessions")
        sid = secrets.token_urlsafe(18)
        self.sessions[sid] = now + self.session_timeout_s
        self.logins += 1
        message = "app-password correct" if self.app_password else "password correct"
        return _json(self._session(True, sid, int(self.session_timeout_s), message))

    async def _logout(self, request: web.Request) -> web.Response:
        sid = self._sid(request)
        if not self._authorized(request) or sid is None:
            return _json(self._session(False, None, -1, "unauthorized"), status=401)
        del self.sessions[sid]
        self.logouts += 1
        return web.Response(status=204, content_type="application/json")

    async def _get_config(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        parts = [p for p in request.match_info.get("path", "").split("/") if p]
        node: Any = self.config
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return _error(400, "bad_request", "Config item not found", "/".join(parts))
            node = node[part]
        wrapped: Any = copy.deepcopy(node)
        for part in reversed(parts):
            wrapped = {part: wrapped}
        return _json({"config": wrapped})

    async def _patch_config(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        if self.app_password and not self.app_sudo:
            return _json({"error": FORBIDDEN}, status=403)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_request", "Invalid JSON payload")
        conf = body.get("config") if isinstance(body, dict) else None
        if not isinstance(conf, dict):
            return _error(400, "body_error", 'No "config" object in body data')
        hosts = conf.get("dns", {}).get("hosts") if isinstance(conf.get("dns"), dict) else None
        if hosts is not None:
            problem = _check_hosts(hosts)
            if problem:
                return _error(400, "bad_request", "Config item is invalid",
                                   f"dns.hosts: {problem}")
        self.patches += 1
        _merge(self.config, conf)
        return _json({"config": copy.deepcopy(self.config)})

    async def _summary(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return _json(copy.deepcopy(self.summary))


def _json(document: dict[str, Any], status: int = 200) -> web.Response:
    """FTL adds its handling time to every JSON answer."""
    return web.json_response({**document, "took": 0.000194}, status=status)


def _error(status: int, key: str, message: str, hint: str | None = None) -> web.Response:
    return _json({"error": {"key": key, "message": message, "hint": hint}}, status=status)


def _check_hosts(hosts: Any) -> str | None:
    if not isinstance(hosts, list):
        return "not an array"
    for entry in hosts:
        fields = entry.split() if isinstance(entry, str) else []
        if len(fields) < 2:
            return f"{entry!r} is not \"IP HOSTNAME\""
        try:
            ipaddress.ip_address(fields[0])
        except ValueError:
            return f"{fields[0]!r} is not an IP address"
    return None


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """PATCH semantics: known keys are replaced, nested objects merged, unknown ignored."""
    for key, value in update.items():
        if key not in into:
            continue
        if isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
