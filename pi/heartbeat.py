"""Heartbeat: one bounded probe of the host agent's health endpoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from handshake.errors import ValidationError
from handshake.messages import HostHealth, loads


@dataclass(frozen=True, slots=True)
class Beat:
    """The result of one probe."""

    ok: bool
    at: float
    latency_ms: float | None = None
    boot_id: str | None = None
    uptime_s: float | None = None
    error: str | None = None


class HeartbeatProbe:
    """``GET {host.url}/api/v1/health`` within ``timeout_s``; any failure is a failed beat."""

    def __init__(self, url: str, timeout_s: float, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/") + "/api/v1/health"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session = session

    async def probe(self) -> Beat:
        start = time.monotonic()
        at = time.time()
        try:
            async with self.session.get(self.url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    return Beat(ok=False, at=at, error=f"HTTP {resp.status}")
                health = HostHealth.from_json(loads(await resp.read()))
        except (aiohttp.ClientError, TimeoutError, ValueError, ValidationError) as exc:
            return Beat(ok=False, at=at, error=_describe(exc))
        except asyncio.CancelledError:
            raise
        latency = (time.monotonic() - start) * 1000
        if not health.ok:
            return Beat(ok=False, at=at, latency_ms=latency, error="host reports not ok")
        return Beat(ok=True, at=at, latency_ms=round(latency, 2), boot_id=health.boot_id,
                    uptime_s=health.uptime_s)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {exc}"
