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
import hashlib
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
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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


# -- the protocols' cryptography ---------------------------------------------------------

class BadSignature(ValueError):
    """A KLAP request whose signature does not match its session."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()  # noqa: S324 - the protocol's choice, not ours


def klap_auth_hash(username: str, password: str) -> bytes:
    """KLAP v2: sha256(sha1(username) + sha1(password))."""
    return sha256(sha1(username.encode()) + sha1(password.encode()))


def aes_login_ok(params: dict[str, Any], username: str, password: str) -> bool:
    """``login_device``: base64 of the username's sha1 hex; password plain (v1) or sha1 hex (v2)."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    if params.get("username") != b64(sha1(username.encode()).hex()):
        return False
    if "password2" in params:
        return bool(params["password2"] == b64(sha1(password.encode()).hex()))
    return bool(params.get("password") == b64(password))


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    if encrypt:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        enc = cipher.encryptor()
        return enc.update(padded) + enc.finalize()
    dec = cipher.decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


class AesSession:
    """securePassthrough: AES-128-CBC with a key and IV the plug chose, base64 on the wire."""

    def __init__(self, client_key: RSAPublicKey) -> None:
        self.key = secrets.token_bytes(16)
        self.iv = secrets.token_bytes(16)
        sealed = client_key.encrypt(self.key + self.iv, rsa_padding.PKCS1v15())
        self.sealed_key = base64.b64encode(sealed).decode()

    def encrypt(self, data: bytes) -> str:
        return base64.b64encode(_cbc(self.key, self.iv, data, encrypt=True)).decode()

    def decrypt(self, text: str) -> bytes:
        return _cbc(self.key, self.iv, base64.b64decode(text), encrypt=False)


def aes_session(pem: str) -> Session:
    """A new AES session for the client's RSA public key (PEM)."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise ValueError("expected an RSA public key")
    session = Session(b"", b"", b"")
    session.aes = AesSession(key)
    return session


class Session:
    """One client session: KLAP seeds and derived keys, or an AES session and login token."""

    def __init__(self, local_seed: bytes, remote_seed: bytes, auth_hash: bytes) -> None:
        self.local_seed = local_seed
        self.remote_seed = remote_seed
        self.auth_hash = auth_hash
        self.verified = False
        self.aes: AesSession | None = None
        self.token: str | None = None
        seeds = local_seed + remote_seed + auth_hash
        # KLAP key schedule: a 16-byte key, a 12-byte IV prefix whose 4-byte suffix is the
        # request's sequence number, and a 28-byte signing prefix.
        self._key = sha256(b"lsk" + seeds)[:16]
        self._iv = sha256(b"iv" + seeds)[:12]
        self._sig = sha256(b"ldk" + seeds)[:28]

    def _seq(self, seq: int) -> bytes:
        return seq.to_bytes(4, "big", signed=True)

    def decrypt(self, body: bytes, seq: int) -> bytes:
        signature, ciphertext = body[:32], body[32:]
        if signature != sha256(self._sig + self._seq(seq) + ciphertext):
            raise BadSignature("bad signature")
        return _cbc(self._key, self._iv + self._seq(seq), ciphertext, encrypt=False)

    def encrypt(self, data: bytes, seq: int) -> bytes:
        ciphertext = _cbc(self._key, self._iv + self._seq(seq), data, encrypt=True)
        return sha256(self._sig + self._seq(seq) + ciphertext) + ciphertext
