"""Helpers to run the real daemons as processes on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import dns.rdatatype

from tests.helpers import free_port, write_secrets

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``edgepair ARGS`` as a child process, logging to ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "handshake", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


async def wait_http(url: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > end:
                raise AssertionError(f"{url} did not come up in {timeout} s")
            await asyncio.sleep(0.05)


async def resolve(name: str, port: int, host: str = "127.0.0.1") -> str | None:
    """The A answer of the builtin responder, over real UDP."""
    answer = await dns.asyncquery.udp(dns.message.make_query(name, "A"), host, port=port,
                                      timeout=1)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return str(next(iter(rrset)))
    return None


async def status(api: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as s, s.get(api + "/api/v1/status") as r:
        doc: dict[str, object] = await r.json()
        return doc


async def wait_state(api: str, state: str, timeout: float = 10.0) -> float:
    """Wait until the Pi reports ``state``; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if (await status(api))["state"] == state:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"state {state} not reached in {timeout} s: {await status(api)}")
        await asyncio.sleep(0.02)


async def wait_dns(name: str, port: int, address: str, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while True:
        if await resolve(name, port) == address:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{name} did not answer {address} within {timeout} s")
        await asyncio.sleep(0.01)


class Site:
    """A Pi config and a host config in one directory, on free loopback ports."""

    PI_ADDRESS = "127.0.0.2"
    HOST_ADDRESS = "127.0.0.3"
    MAC = "02:ED:6E:9A:17:01"

    def __init__(self, root: Path, *, interval: float = 0.2, fall: int = 3, rise: int = 2,
                 wol_port: int | None = None, dns_backend: str = "builtin",
                 extra_pi: str = "") -> None:
        self.root = root
        self.api_port = free_port()
        self.host_port = free_port()
        self.dns_port = free_port(2)
        self.wol_port = wol_port or free_port(2)
        self.interval, self.fall, self.rise = interval, fall, rise
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.host_url = f"http://{self.HOST_ADDRESS}:{self.host_port}"
        secrets = write_secrets(root / "secrets.toml")
        self.pi_config = root / "pi.toml"
        self.pi_config.write_text(f"""
[pi]
address = "{self.PI_ADDRESS}"
state_dir = "{root / 'pi-state'}"
secrets_file = "{secrets}"
[api]
listen = "127.0.0.1:{self.api_port}"
allow_anonymous_wake = true
[host]
address = "{self.HOST_ADDRESS}"
mac = "{self.MAC}"
url = "{self.host_url}"
heartbeat_interval_s = {interval}
heartbeat_timeout_s = {interval}
fall = {fall}
rise = {rise}
boot_timeout_s = 30
going_offline_grace_s = 60
[wol]
target = "127.0.0.1"
port = {self.wol_port}
[dns]
backend = "{dns_backend}"
name = "nas.home.arpa"
ttl_s = 5
listen = "127.0.0.1:{self.dns_port}"
reconcile_s = 1
{extra_pi}
""")
        self.host_config = root / "host.toml"
        self.host_config.write_text(f"""
[host]
listen = "{self.HOST_ADDRESS}:{self.host_port}"
state_dir = "{root / 'host-state'}"
secrets_file = "{secrets}"
[pi]
url = "{self.api}"
notify_deadline_s = 5
[snapshot]
volumes = ["{root}"]
""")

    def start_pi(self) -> subprocess.Popen[bytes]:
        return spawn("pi", "run", "api", "--config", str(self.pi_config),
                     log=self.root / "pi.log")

    def start_host(self) -> subprocess.Popen[bytes]:
        return spawn("host", "run", "--config", str(self.host_config),
                     log=self.root / "host.log")

    def notify(self, kind: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "handshake", "host", "notify", kind, *args,
                               "--config", str(self.host_config)], cwd=ROOT,
                              capture_output=True, timeout=30, check=False)
