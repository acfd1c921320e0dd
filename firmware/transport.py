# HTTP/1.1 to the Pi over asyncio streams, requests signed with HMAC-SHA256.
# The canonical string is the handshake's: METHOD \n PATH \n ts \n nonce \n sha256hex(body).
import asyncio
import binascii
import hashlib
import json
import os
import time

BLOCK = 64
# One request's deadline: on the LAN the Pi answers in milliseconds; a dead one must
# not hold the loop (the motor watchdog runs beside it).
REQUEST_TIMEOUT_S = 5
MAX_RESPONSE = 8192


class Error(Exception):
    """The Pi could not be reached or answered garbage: retry later."""


class Refused(Exception):
    """The Pi answered with an HTTP error."""

    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


def hexlify(data):
    return binascii.hexlify(data).decode()


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256 (MicroPython has no hmac module)."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def canonical(method, path, ts, nonce, body):
    digest = hexlify(hashlib.sha256(body).digest())
    return ("%s\n%s\n%d\n%s\n%s" % (method, path, ts, nonce, digest)).encode()


def authorization(key, method, path, body, ts):
    nonce = hexlify(os.urandom(16))
    sig = hexlify(hmac_sha256(key, canonical(method, path, ts, nonce, body)))
    return "EdgePair ts=%d, nonce=%s, sig=%s" % (ts, nonce, sig)


def split_url(url):
    """http://HOST:PORT → (host, port); only plain HTTP on the LAN."""
    if not url.startswith("http://"):
        raise ValueError("pi_url must start with http://")
    rest = url[7:].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host:
        return rest, 80
    return host.strip("[]"), int(port)


class Link:
    """The node's one connection to the Pi: its address, its key and the Pi's clock."""

    def __init__(self, url, hwid):
        self.host, self.port = split_url(url)
        self.hwid = hwid
        self.key = None
        self.offset = 0  # the Pi's clock minus ours: signatures carry the Pi's time
        self.last_ok = None  # time.ticks_ms() of the last good answer

    def now(self):
        return time.time() + self.offset

    async def hello(self, body):
        return await self.request("/api/v1/nodes/hello", body, signed=False)

    async def call(self, name, body):
        return await self.request("/api/v1/nodes/%s/%s" % (self.hwid, name), body, signed=True)

    async def request(self, path, body, signed):
        raw = json.dumps(body).encode()
        headers = {}
        if signed:
            headers["Authorization"] = authorization(self.key, "POST", path, raw, int(self.now()))
        try:
            status, data = await asyncio.wait_for(
                _post(self.host, self.port, path, raw, headers), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            raise Error("%s: %r" % (path, exc))
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            raise Error("%s: HTTP %d, not JSON" % (path, status))
        if status >= 400:
            raise Refused(status, answer)
        now = answer.get("now")
        if isinstance(now, (int, float)):
            self.offset = now - time.time()
        self.last_ok = time.ticks_ms()
        return answer


async def _post(host, port, path, raw, headers):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = ["POST %s HTTP/1.1" % path, "Host: %s:%d" % (host, port),
                 "Content-Type: application/json", "Content-Length: %d" % len(raw),
                 "Connection: close"]
        for name in headers:
            lines.append("%s: %s" % (name, headers[name]))
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + raw)
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split()
        if len(parts) < 2:
            raise ValueError("no HTTP status line")
        status = int(parts[1])
        length = None
        while True:
            line = await reader.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None or length > MAX_RESPONSE:
            raise ValueError("response without a usable Content-Length")
        data = await reader.readexactly(length) if length else b""
        return status, data
    finally:
        writer.close()
        await writer.wait_closed()
