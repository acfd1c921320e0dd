"""A plug's readings and health, without python-kasa: pure bookkeeping the daemon and tests share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from handshake.errors import TemporaryError
from pi.power.config import PlugConfig

HEALTH = ("ok", "stale", "auth_failed", "unreachable")
# A reading counts as live for this many polling intervals: one late poll is tolerated, a
# hung one is not (the update timeout is usually longer than the interval).
STALE_INTERVALS = 2.5


@dataclass(frozen=True, slots=True)
class Reading:
    """What one poll of a plug returned."""

    at: float  # Unix time the reading arrived
    w: float  # watts
    today_wh: int | None = None  # the plug's own counters, when it has them
    month_wh: int | None = None


# Beyond what a plug can carry (a P110 switches 16 A, 3.7 kW) or count: a broken answer.
MAX_PLAUSIBLE_W = 10_000.0
MAX_PLAUSIBLE_WH = 10_000_000  # 10 MWh: a month at the plug's limit is under 3 MWh


def implausible(reading: Reading) -> str | None:
    """Why ``reading`` cannot be true (NaN, negative, beyond any plug), or None."""
    if not math.isfinite(reading.w) or not 0 <= reading.w <= MAX_PLAUSIBLE_W:
        return f"implausible power reading {reading.w!r} W"
    for name, wh in (("today", reading.today_wh), ("month", reading.month_wh)):
        if wh is not None and not 0 <= wh <= MAX_PLAUSIBLE_WH:
            return f"implausible {name} counter {wh!r} Wh"
    return None


class PlugError(TemporaryError):
    """A poll failed; ``kind`` is the health it leaves: auth_failed, unreachable or stale."""

    def __init__(self, kind: str, message: str) -> None:
        assert kind in HEALTH[1:], kind
        self.kind = kind
        super().__init__(message)


class PlugLink(Protocol):
    """One plug as the daemon sees it (python-kasa in production, fakes in tests)."""

    async def read(self) -> Reading:
        """One poll; raises PlugError."""

    async def close(self) -> None:
        """Drop the connection; the next read() reconnects."""


@dataclass(slots=True)
class PlugStatus:
    """The daemon's view of one plug: the last good reading and the current failure, if any."""

    config: PlugConfig
    reading: Reading | None = None
    failure: str | None = None
    error: str | None = None
    failures: int = 0

    def succeeded(self, reading: Reading) -> int:
        """Record a good reading; returns how many failures in a row it ends."""
        ended, self.failures = self.failures, 0
        self.reading, self.failure, self.error = reading, None, None
        return ended

    def failed(self, error: PlugError) -> None:
        self.failures += 1
        self.failure, self.error = error.kind, str(error)

    def health(self, now: float) -> str:
        """ok only while the last poll succeeded and its reading is recent."""
        if self.failure is not None:
            return self.failure
        if self.reading is None or now - self.reading.at > STALE_INTERVALS * self.config.interval_s:
            return "stale"
        return "ok"

    def live_w(self, now: float) -> float | None:
        """The reading to show as live, never a frozen one."""
        if self.reading is None or self.health(now) != "ok":
            return None
        return self.reading.w

    def next_poll_in(self, max_backoff_s: float) -> float:
        """The interval while healthy; after failures a doubling delay, capped."""
        interval = self.config.interval_s
        if self.failures == 0:
            return interval
        return float(min(interval * 2 ** min(self.failures - 1, 32), max(max_backoff_s, interval)))
