"""An emulated Tapo P110 on 127.0.0.1 that speaks the real local protocols (KLAP v2 and AES).

python-kasa's own transport, protocol and Energy module talk to it, so tests and the demo
exercise the real client code. Written from the protocol's description (TP-Link's local
"SMART" JSON API over KLAP or securePassthrough); no code or fixtures are taken from
python-kasa. Faults: ``hang``, ``stop_listening()`` (connection refused),
``reject_credentials``, ``error_code`` (every request answered with a device error),
``energy = False`` (the energy methods are unknown), ``counters = False`` (no day/month
counters); readings: ``power_w`` or a ``power`` callback, ``today_wh``, ``month_wh``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from pi.sim.plugcrypto import BadSignature, Session, aes_login_ok, aes_session, klap_auth_hash, sha256

log = logging.getLogger(__name__)

UNKNOWN_METHOD = -1002  # what the firmware answers for a method it does not have
LOGIN_ERROR = -1501  # AES login_device with a wrong account
SESSION_TIMEOUT = 9999  # AES request without a valid token: the client handshakes again
SESSION_TIMEOUT_S = 86400  # the TIMEOUT cookie real plugs send with a new session
MAX_SESSIONS = 16  # like the firmware, only a handful of sessions are remembered
SERVED_KEPT = 10_000  # times of the latest readings answered, for tests (bounded for the demo)
ENERGY_METHODS = ("get_energy_usage", "get_current_power", "get_emeter_data",
                  "get_emeter_vgain_igain")
COOKIE = "TP_SESSIONID"
DEFAULT_USERNAME = "user@example.com"
DEFAULT_PASSWORD = "demo-password"  # noqa: S105 - the emulator's own account, loopback only


class EmulatedPlug:
    """A P110 with an energy meter: ``await start()`` returns the port it listens on."""

    def __init__(self, *, username: str = DEFAULT_USERNAME, password: str = DEFAULT_PASSWORD,
                 encryption: str = "klap", power_w: float = 0.0,
                 power: Callable[[], float] | None = None, voltage_v: float = 230.0,
                 nickname: str = "emulated plug", clock: Callable[[], float] = time.time) -> None:
        if encryption not in ("klap", "aes"):
            raise ValueError(f"encryption must be klap or aes, not {encryption!r}")
        self.username = username
        self.password = password
        self.encryption = encryption
        self.power_w = power_w
        self.power = power
        self.voltage_v = voltage_v
        self.nickname = nickname
        self.clock = clock
        # Faults, switched by tests and the demo.
        self._reject = False
        self.error_code: int | None = None
        self.energy = True
        self.counters = True
        # Energy counters in Wh; integrated from the power as time passes.
        self.today_wh = 0.0
        self.month_wh = 0.0
        self.requests = 0
        self.handshakes = 0
        self.readings = 0  # power readings answered
        self.served: deque[float] = deque(maxlen=SERVED_KEPT)  # when (clock), the latest ones
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self._release.set()
        self._sessions: dict[str, Session] = {}
        self._counted_at: float | None = None
        self._day = ""
        self._device_id = secrets.token_hex(20).upper()
        self._mac = "02-00-5E-" + "-".join(secrets.token_hex(1).upper() for _ in range(3))

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: a free port); the port actually bound."""
        self.host = host
        self.port = port
        await self.start_listening()
        return self.port

    async def stop(self) -> None:
        self.hang = False
        await self.stop_listening()

    async def stop_listening(self) -> None:
        """Close the socket and every connection: clients now get "connection refused"."""
        runner, self._runner = self._runner, None
        if runner is not None:
            hanging = self.hang
            self.hang = False  # let hung requests end so the server can close
            await runner.cleanup()
            self.hang = hanging

    async def start_listening(self) -> None:
        """Listen again on the same port (after ``stop_listening``)."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/app/handshake1", self._handshake1)
        app.router.add_post("/app/handshake2", self._handshake2)
        app.router.add_post("/app/request", self._klap_request)
        app.router.add_post("/app", self._aes)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])  # the bound port, kept for start_listening

    @property
    def hang(self) -> bool:
        """True: requests are accepted and never answered (until set back to False)."""
        return not self._release.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        if value:
            self._release.clear()
        else:
            self._release.set()

    @property
    def reject_credentials(self) -> bool:
        """True: the plug now belongs to another account (its sessions are gone too)."""
        return self._reject

    @reject_credentials.setter
    def reject_credentials(self, value: bool) -> None:
        if value and not self._reject:
            self.forget_sessions()
        self._reject = value

    async def _receive(self, request: web.Request) -> bytes | None:
        """The request body, once the plug is not hanging; None when the client gave up."""
        try:
            body = await request.read()
        except ConnectionError:
            return None
        await self._release.wait()
        return body

    def forget_sessions(self) -> None:
        """Drop every session, as a plug does when it reboots."""
        self._sessions.clear()

    # -- readings ------------------------------------------------------------------------

    def current_w(self) -> float:
        return float(self.power()) if self.power is not None else float(self.power_w)

    def _integrate(self) -> None:
        now = self.clock()
        day = datetime.fromtimestamp(now).strftime("%Y-%m-%d")
        if self._counted_at is not None:
            if day != self._day:
                if day[:7] != self._day[:7]:
                    self.month_wh = 0.0
                self.today_wh = 0.0
            added = self.current_w() * max(0.0, now - self._counted_at) / 3600
            self.today_wh += added
            self.month_wh += added
        self._counted_at = now
        self._day = day

    # -- the SMART JSON API --------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The plug's reply to one decrypted request (``multipleRequest`` or a single method)."""
        self.requests += 1
        if self.error_code is not None:
            return {"error_code": self.error_code}
        self._integrate()
        method = request.get("method")
        if method == "multipleRequest":
            calls = (request.get("params") or {}).get("requests") or []
            responses = [{"method": c.get("method"), **self._call(c.get("method"), c.get("params"))}
                         for c in calls]
            return {"error_code": 0, "result": {"responses": responses}}
        return self._call(method, request.get("params"))

    def _call(self, method: Any, params: Any) -> dict[str, Any]:
        if method in ENERGY_METHODS and not self.energy:
            return {"error_code": UNKNOWN_METHOD}
        if method == "get_energy_usage" and not self.counters:
            return {"error_code": UNKNOWN_METHOD}
        result = self._result(method, params)
        if result is None:
            return {"error_code": UNKNOWN_METHOD}
        return {"error_code": 0, "result": result}

    def _result(self, method: Any, params: Any) -> dict[str, Any] | None:
        power_mw = round(self.current_w() * 1000)
        now = self.clock()
        match method:
            case "component_nego":
                return {"component_list": [{"id": name, "ver_code": ver} for name, ver in (
                    ("device", 2), ("energy_monitoring", 2), ("led", 1))]}
            case "get_device_info":
                return self._device_info()
            case "get_device_usage":
                return {"time_usage": {"today": 0, "past7": 0, "past30": 0},
                        "power_usage": {"today": round(self.today_wh), "past7": 0, "past30": 0},
                        "saved_power": {"today": 0, "past7": 0, "past30": 0}}
            case "get_connect_cloud_state":
                return {"status": 0}
            case "get_led_info":
                return {"led_rule": "always", "led_status": True}
            case "get_energy_usage":
                return {"today_runtime": 0, "month_runtime": 0,
                        "today_energy": int(self.today_wh), "month_energy": int(self.month_wh),
                        "local_time": datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S"),
                        "electricity_charge": [0, 0, 0], "current_power": power_mw}
            case "get_current_power":
                return {"current_power": round(power_mw / 1000)}
            case "get_emeter_data":
                self.readings += 1
                self.served.append(now)
                volts = self.voltage_v
                return {"power_mw": power_mw, "voltage_mv": round(volts * 1000),
                        "current_ma": round(power_mw / volts) if volts else 0,
                        "energy_wh": int(self.month_wh)}
            case "get_emeter_vgain_igain":
                return {"v_gain": 121000, "i_gain": 11000}
            case "set_device_info":
                return {}
        return None

    def _device_info(self) -> dict[str, Any]:
        return {
            "device_id": self._device_id, "fw_ver": "1.3.1 Build 240621 Rel.162048",
            "hw_ver": "1.0", "type": "SMART.TAPOPLUG", "model": "P110", "mac": self._mac,
            "hw_id": "0" * 32, "fw_id": "0" * 32, "oem_id": "0" * 32, "ip": self.host,
            "time_diff": 0, "ssid": base64.b64encode(b"edgepair-sim").decode(), "rssi": -45,
            "signal_level": 3, "latitude": 0, "longitude": 0, "lang": "en_US",
            "avatar": "plug", "region": "UTC", "specs": "", "has_set_location_info": False,
            "nickname": base64.b64encode(self.nickname.encode()).decode(),
            "device_on": True, "on_time": 3600, "default_states": {"type": "last_states"},
        }

    # -- KLAP v2 -------------------------------------------------------------------------

    def _auth_hash(self) -> bytes:
        password = self.password + "-changed" if self.reject_credentials else self.password
        return klap_auth_hash(self.username, password)

    async def _handshake1(self, request: web.Request) -> web.Response:
        local_seed = await self._receive(request)
        if self.encryption != "klap" or local_seed is None or len(local_seed) != 16:
            return web.Response(status=400)
        self.handshakes += 1
        remote_seed = secrets.token_bytes(16)
        auth = self._auth_hash()
        session_id = secrets.token_hex(16).upper()
        self._remember(session_id, Session(local_seed, remote_seed, auth))
        body = remote_seed + sha256(local_seed + remote_seed + auth)
        response = web.Response(body=body)
        response.set_cookie(COOKIE, session_id)
        response.set_cookie("TIMEOUT", str(SESSION_TIMEOUT_S))
        return response

    async def _handshake2(self, request: web.Request) -> web.Response:
        proof = await self._receive(request)
        session = self._sessions.get(request.cookies.get(COOKIE, ""))
        if session is None or proof is None or proof != sha256(session.remote_seed + session.local_seed
                                                      + session.auth_hash):
            return web.Response(status=403)
        session.verified = True
        return web.Response()

    async def _klap_request(self, request: web.Request) -> web.Response:
        body = await self._receive(request)
        session = self._sessions.get(request.cookies.get(COOKIE, ""))
        try:
            seq = int(request.query["seq"])
        except (KeyError, ValueError):
            return web.Response(status=400)
        if session is None or not session.verified or body is None:
            return web.Response(status=403)  # the client handshakes again
        try:
            plain = session.decrypt(body, seq)
            payload = json.loads(plain)
        except (ValueError, BadSignature):
            return web.Response(status=400)
        answer = json.dumps(self.answer(payload)).encode()
        return web.Response(body=session.encrypt(answer, seq))

    # -- AES (securePassthrough, older firmware) -----------------------------------------

    async def _aes(self, request: web.Request) -> web.Response:
        body = await self._receive(request)
        if self.encryption != "aes" or body is None:
            return web.Response(status=404)
        try:
            outer = json.loads(body)
        except ValueError:
            return web.json_response({"error_code": -1003})
        method = outer.get("method")
        if method == "handshake":
            return self._aes_handshake(outer)
        session = self._sessions.get(request.cookies.get(COOKIE, ""))
        if method != "securePassthrough" or session is None or session.aes is None:
            return web.json_response({"error_code": SESSION_TIMEOUT})
        try:
            inner = json.loads(session.aes.decrypt(outer["params"]["request"]))
        except (KeyError, TypeError, ValueError):
            return web.json_response({"error_code": -1005})
        if inner.get("method") == "login_device":
            reply = self._aes_login(session, inner.get("params") or {})
        elif session.token is None or request.query.get("token") != session.token:
            return web.json_response({"error_code": SESSION_TIMEOUT})
        else:
            reply = self.answer(inner)
        response = session.aes.encrypt(json.dumps(reply).encode())
        return web.json_response({"error_code": 0, "result": {"response": response}})

    def _aes_handshake(self, outer: dict[str, Any]) -> web.Response:
        try:
            session = aes_session((outer.get("params") or {})["key"])
        except (KeyError, TypeError, ValueError):
            return web.json_response({"error_code": -1010})
        self.handshakes += 1
        session_id = secrets.token_hex(16).upper()
        self._remember(session_id, session)
        assert session.aes is not None
        response = web.json_response({"error_code": 0, "result": {"key": session.aes.sealed_key}})
        response.set_cookie(COOKIE, session_id)
        response.set_cookie("TIMEOUT", str(SESSION_TIMEOUT_S))
        return response

    def _aes_login(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        password = self.password + "-changed" if self.reject_credentials else self.password
        if aes_login_ok(params, self.username, password):
            session.token = secrets.token_hex(16).upper()
            return {"error_code": 0, "result": {"token": session.token}}
        return {"error_code": LOGIN_ERROR}

    def _remember(self, session_id: str, session: Session) -> None:
        self._sessions[session_id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))


# What a small home server draws in each state of the demo's simulated host (watts).
HOST_DRAW_W = {"asleep": 1.2, "booting": 52.0, "up": 38.0, "hung": 36.0}


def host_draw(state: Callable[[], str], *, watts: Mapping[str, float] = HOST_DRAW_W,
              clock: Callable[[], float] = time.time) -> Callable[[], float]:
    """A ``power`` callback for the demo's host plug: the draw of the simulated host's state
    (unknown states draw like ``asleep``), with a slow wobble of a few percent while on."""
    def draw() -> float:
        base = watts.get(state(), watts.get("asleep", 0.0))
        if base < 5:
            return base
        return round(base * (1 + 0.03 * math.sin(clock() / 15)), 3)
    return draw
