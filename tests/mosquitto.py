"""A real Mosquitto broker for tests: a temp config on a free loopback port, a password file
made with mosquitto_passwd, an ACL, no persistence (a restart loses every retained message,
the hard case for a client), and an MQTT subscriber that records what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from tests.helpers import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0

# The shipped ACL of the Pi's broker (the daemon writes, Home Assistant reads and may press
# the Wake host button), plus a viewer who may only read.
SITE_ACL = Path(__file__).resolve().parent.parent / "scripts" / "mosquitto" / "site.acl"
USERS = {"edgepair": "pi-secret", "homeassistant": "ha-secret", "viewer": "viewer-secret"}
ACL = SITE_ACL.read_text() + """
user viewer
topic read edgepair/#
topic read homeassistant/#
"""


class Broker:
    """``mosquitto -c`` with its own folder under ``root``; ``start``/``stop``/``restart``."""

    def __init__(self, root: Path, *, name: str = "broker", port: int | None = None,
                 users: dict[str, str] | None = None, acl: str = ACL, extra: str = "") -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.users = users or USERS
        passwd = self.dir / "passwd"
        for i, (user, password) in enumerate(self.users.items()):
            subprocess.run([MOSQUITTO_PASSWD, "-b", *(["-c"] if i == 0 else []), str(passwd),
                            user, password], check=True, capture_output=True, timeout=10)
        passwd.chmod(0o600)
        (self.dir / "acl").write_text(acl)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"""
listener {self.port} 127.0.0.1
allow_anonymous false
password_file {passwd}
acl_file {self.dir / 'acl'}
persistence false
log_dest file {self.log}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
{"user root" if os.geteuid() == 0 else ""}
{extra}
""")

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited ({self.proc.returncode}): {self.log_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Received:
    """Everything a subscriber got, in order: (monotonic time, topic, payload, retained)."""

    messages: list[tuple[float, str, bytes, bool]] = field(default_factory=list)

    def latest(self) -> dict[str, bytes]:
        """The last payload per topic."""
        return {topic: payload for _, topic, payload, _ in self.messages}

    def on(self, topic: str) -> list[bytes]:
        return [payload for _, t, payload, _ in self.messages if t == topic]


@contextlib.asynccontextmanager
async def subscriber(broker: Broker, *topics: str,
                     user: str = "homeassistant") -> AsyncIterator[Received]:
    """An MQTT client (Home Assistant's view) recording every message on ``topics``."""
    received = Received()
    async with aiomqtt.Client("127.0.0.1", broker.port, username=user, password=broker.users[user],
                              identifier=f"test-{user}-{time.monotonic_ns()}") as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def record() -> None:
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                received.messages.append((time.monotonic(), str(m.topic), payload, m.retain))

        task = asyncio.create_task(record())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def until(condition: Callable[[], object], timeout: float = 10.0,
                what: str | Callable[[], object] = "") -> float:
    """Poll ``condition`` until it is true; the seconds it took (AssertionError after timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what or condition}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


class Link:
    """A TCP relay in front of a broker: ``cut()`` drops every connection through it at once,
    as a dead network does (no DISCONNECT from either side)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Link:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker.port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def make_tls(folder: Path) -> tuple[Path, str]:
    """A throw-away CA and a server certificate for 127.0.0.1 (cryptography, no CLI):
    the CA file, and the listener lines Mosquitto needs for TLS with it."""
    import datetime  # noqa: PLC0415
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgepair test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    lines = f"cafile {paths['ca']}\ncertfile {paths['cert']}\nkeyfile {paths['key']}\n"
    return paths["ca"], lines
