"""Shared helpers of the benchmarks: a loopback site, child processes, /proc readers, figures.

Importing this module puts the repository root on ``sys.path``, so the benchmarks run from
a plain checkout with ``.venv/bin/python scripts/bench/NAME.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Spawning Python and importing aiohttp on a slow Pi takes a few seconds; this is generous.
START_TIMEOUT_S = 20.0
# A daemon asked to stop (SIGTERM) gets this long before it is killed.
STOP_TIMEOUT_S = 10.0

PI_ADDRESS = "127.0.0.2"  # the DNS answer while the host is not online
HOST_ADDRESS = "127.0.0.3"  # the host agent listens here: the DNS answer while online
DNS_NAME = "nas.home.arpa"
MAC = "02:ED:6E:9A:17:01"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel considers free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the site: a Pi config and a host config on loopback ---------------------------------

class BenchSite:
    """A Pi config and a host config in a temporary directory, on free loopback ports.

    Like ``tests.e2e.Site``, but the heartbeat timeout is set apart from the interval and
    every other key keeps its production default unless the benchmark needs otherwise.
    """

    def __init__(self, *, interval: float, timeout: float, fall: int = 3, rise: int = 2,
                 going_offline_grace_s: float = 120.0, pi_log_level: str = "INFO") -> None:
        from handshake.auth import keygen  # noqa: PLC0415 - after the sys.path tweak

        self.root = Path(tempfile.mkdtemp(prefix="edgepair-bench-"))
        self.interval, self.timeout, self.fall, self.rise = interval, timeout, fall, rise
        self.pi_log_level = pi_log_level
        self.key = bytes.fromhex(keygen())
        self.api_port = free_port()
        self.host_port = free_port()
        self.dns_port = free_port(socket.SOCK_DGRAM)
        # Magic packets go to a unicast loopback port nobody needs (never a broadcast).
        self.wol_port = free_port(socket.SOCK_DGRAM)
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.host_url = f"http://{HOST_ADDRESS}:{self.host_port}"
        self.state_dir = self.root / "pi-state"
        self.public_dir = self.state_dir / "public"
        secrets = self.root / "secrets.toml"
        secrets.write_text(f'handshake_key = "{self.key.hex()}"\n')
        secrets.chmod(0o600)
        self.pi_config = self.root / "pi.toml"
        self.pi_config.write_text(f"""
[pi]
address = "{PI_ADDRESS}"
state_dir = "{self.state_dir}"
secrets_file = "{secrets}"
[api]
listen = "127.0.0.1:{self.api_port}"
allow_anonymous_wake = true
[host]
address = "{HOST_ADDRESS}"
mac = "{MAC}"
url = "{self.host_url}"
heartbeat_interval_s = {interval}
heartbeat_timeout_s = {timeout}
fall = {fall}
rise = {rise}
going_offline_grace_s = {going_offline_grace_s}
[wol]
target = "127.0.0.1"
port = {self.wol_port}
[dns]
backend = "builtin"
name = "{DNS_NAME}"
ttl_s = 5
listen = "127.0.0.1:{self.dns_port}"
""")
        self.host_config = self.root / "host.toml"
        self.host_config.write_text(f"""
[host]
listen = "{HOST_ADDRESS}:{self.host_port}"
state_dir = "{self.root / 'host-state'}"
secrets_file = "{secrets}"
[pi]
url = "{self.api}"
notify_deadline_s = 5
[snapshot]
volumes = ["{self.root}"]
""")

    def pi_command(self) -> list[str]:
        return ["--log-level", self.pi_log_level, "pi", "run", "api",
                "--config", str(self.pi_config)]

    def host_command(self) -> list[str]:
        return ["host", "run", "--config", str(self.host_config)]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- child processes ---------------------------------------------------------------------

class Children:
    """The daemons this benchmark started; all of them are stopped on exit, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        atexit.register(self.stop_all)

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        """``edgepair ARGS`` (``python -m handshake``) as a child process, logging to ``log``."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)  # never talk to a real systemd
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "handshake", *args], cwd=ROOT, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Signal ``proc`` (it is killed if it does not exit in time) and reap it."""
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return code

    def stop_all(self) -> None:
        for proc in list(self.procs):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a stopped process can't handle SIGTERM
            self.stop(proc)


def run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """asyncio.run with SIGTERM and SIGHUP treated like Ctrl-C, so cleanup always runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


async def wait_for(what: str, check: Callable[[], Coroutine[Any, Any, bool]],
                   timeout: float = START_TIMEOUT_S, every: float = 0.02,
                   procs: tuple[subprocess.Popen[bytes], ...] = (), log: Path | None = None) -> float:
    """Poll ``check`` until it is true; the seconds it took. Fails early if a daemon died."""
    start = time.monotonic()
    while not await check():
        for proc in procs:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
                raise SystemExit(f"a daemon exited with {proc.returncode} while waiting for "
                                 f"{what}\n{tail}")
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def resolve(port: int, timeout: float = 0.5) -> str | None:
    """The A answer for the failover name from the builtin responder on 127.0.0.1, over UDP."""
    query = dns.message.make_query(DNS_NAME, "A")
    try:
        answer = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=timeout)
    except dns.exception.Timeout:
        return None
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return str(next(iter(rrset)))
    return None


async def http_ok(session: aiohttp.ClientSession, url: str) -> bool:
    """True when ``GET url`` answers 200 within a second."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def wait_http(session: aiohttp.ClientSession, url: str,
                    procs: tuple[subprocess.Popen[bytes], ...] = (), log: Path | None = None) -> float:
    """Wait until ``GET url`` answers 200; the seconds it took."""
    async def up() -> bool:
        return await http_ok(session, url)

    return await wait_for(url, up, procs=procs, log=log)


async def pi_status(session: aiohttp.ClientSession, api: str) -> dict[str, Any]:
    """``GET /api/v1/status`` of the Pi: what host.json holds."""
    async with session.get(api + "/api/v1/status") as resp:
        doc: dict[str, Any] = await resp.json()
        return doc


# -- /proc -------------------------------------------------------------------------------

def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in MB (10^6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return {"rss_mb": fields["VmRSS"], "hwm_mb": fields["VmHWM"]}


def io_counters(pid: int) -> dict[str, int]:
    """``/proc/PID/io``: wchar, syscw, write_bytes (what reaches the block layer), …"""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value)
    return out


def fs_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    target = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, fields[2]
    return kind


def machine() -> dict[str, Any]:
    """Where the figures come from: CPUs, the load when the run started, Python, kernel."""
    return {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0], "kernel": os.uname().release,
            "machine": os.uname().machine}


def machine_line(m: dict[str, Any]) -> str:
    return (f"  machine    {m['cpus']} CPUs ({m['machine']}), 1-min load average {m['loadavg_1m']:g} "
            f"at start, Python {m['python']}, Linux {m['kernel']}")


# -- figures -----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, float]:
    """min, median, mean, p95, p99, max of ``values`` × ``scale``."""
    def r(x: float) -> float:
        return round(x * scale, digits)

    return {"n": len(values), "min": r(min(values)), "median": r(statistics.median(values)),
            "mean": r(statistics.fmean(values)), "p95": r(percentile(values, 95)),
            "p99": r(percentile(values, 99)), "max": r(max(values))}


@dataclass(frozen=True, slots=True)
class Target:
    """One figure against its limit: ``value ≤ limit`` (or ``<`` when ``strict``)."""

    name: str
    value: float
    limit: float
    unit: str
    strict: bool = False

    @property
    def passed(self) -> bool:
        return self.value < self.limit if self.strict else self.value <= self.limit

    def line(self) -> str:
        sign = "<" if self.strict else "≤"
        return (f"{self.name} {self.value:g} {self.unit} (target {sign} {self.limit:g} "
                f"{self.unit}): {'PASS' if self.passed else 'FAIL'}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pass": self.passed}


def emit_json(document: dict[str, Any], targets: list[Target]) -> None:
    """One JSON object: the figures, every target with its verdict, and the overall verdict."""
    document = {**document, "targets": [t.to_json() for t in targets],
                "pass": all(t.passed for t in targets)}
    print(json.dumps(document))
