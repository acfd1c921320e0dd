"""The api daemon's usage service: hears the host controller, keeps the ledger, writes usage.json.

A ``HostObserver``: state changes and wakes go to the ledger's memory at once (under the
controller's lock, so nothing blocks there); ``run`` commits in batches and publishes
usage.json at least every ``[usage] publish_interval_s`` and at once after a wake, in its
own database thread. Cancelled, it commits what waits and publishes once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, tzinfo
from typing import TypeVar
from zoneinfo import ZoneInfo

from handshake import documents
from handshake.documents import UsageDocument
from handshake.errors import EdgepairError
from handshake.messages import WakeReason
from handshake.util.quietlog import QuietLogger
from pi import state as sm
from pi.config import PiConfig
from pi.power import history as power_history
from pi.power.config import PowerConfig
from pi.usage import build, ledger
from pi.usage.ledger import Ledger

# What the ledger records for the hours before the Pi ever heard from its host.
UNKNOWN = "unknown"

log = logging.getLogger(__name__)

T = TypeVar("T")
# The window the document covers, plus a day of margin for the zone.
WINDOW_DAYS = 32
MWMS_PER_KWH = power_history.MWMS_PER_WH * 1000


class UsageService:
    """The usage ledger's owner in the api daemon (one per process)."""

    def __init__(self, config: PiConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        usage = config.usage
        self.tz: tzinfo | None = ZoneInfo(config.schedule.timezone) if config.schedule.timezone \
            else None  # the power history's calendar: local days, DST-aware
        self.ledger = Ledger(ledger.database_path(config.private_dir),
                             retention_days=usage.retention_days,
                             commit_interval_s=usage.commit_interval_s, clock=clock)
        self.path = config.public_dir / documents.FILES[UsageDocument]
        self.quiet = QuietLogger(log)
        self._woken = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self.published = 0
        self.opened = False

    # -- HostObserver ----------------------------------------------------------------------

    def state_changed(self, before: sm.HostStatus, after: sm.HostStatus, now: float) -> None:
        self.ledger.transition(ledger_state(after), after.since)

    def woken(self, reason: WakeReason, client: str | None, now: float) -> None:
        self.ledger.wake(now, reason, client)
        self._woken.set()

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, status: sm.HostStatus) -> bool:
        """Open the ledger with the state the controller restored (before it runs).

        A ledger that cannot be opened costs usage.json, never failover: an ERROR, False.
        """
        try:
            self.ledger.open(ledger_state(status), status.since)
        except (EdgepairError, sqlite3.Error) as exc:
            log.error("usage ledger unavailable, usage.json is not written: %s", exc)
            self.ledger.close()
            return False
        self.opened = True
        return True

    async def run(self) -> None:
        """Commit at most every commit_interval_s, publish; a last commit when cancelled."""
        if not self.opened:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="usage-db")
        interval = self.config.usage.publish_interval_s
        try:
            while True:
                await self._in_thread(self.step)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._woken.wait()
                self._woken.clear()
        except BaseException:
            # A clean stop: what waits reaches the disk (off the loop, but awaited).
            with contextlib.suppress(Exception):
                await asyncio.shield(self._in_thread(self.flush))
            raise
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True)
            self.ledger.close()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- the database thread -----------------------------------------------------------------

    def step(self) -> None:
        """Commit when due, then publish usage.json."""
        now = self.clock()
        if self.ledger.due(now):
            self._commit(now)
        self.publish(now)

    def flush(self) -> None:
        """Commit whatever waits and publish (a clean stop)."""
        now = self.clock()
        self._commit(now)
        self.publish(now)

    def _commit(self, now: float) -> None:
        try:
            self.ledger.commit(now)
        except sqlite3.Error as exc:  # full or read-only card: kept in memory, retried
            self.quiet.failure("commit", "cannot write the usage ledger %s: %s",
                               self.ledger.path, exc)
        else:
            self.quiet.success("commit", "usage ledger written again")

    def document(self, now: float) -> UsageDocument:
        view = self.ledger.view(now - WINDOW_DAYS * 86400)
        usage = self.config.usage
        return build.build(view.intervals, view.wakes, now, self.tz,
                           energy=self.host_energy(view.intervals, now),
                           price_per_kwh=usage.price_per_kwh, currency=usage.currency,
                           timezone=self.config.schedule.timezone,
                           interval_s=usage.publish_interval_s)

    def publish(self, now: float) -> None:
        try:
            document = self.document(now)
        except sqlite3.Error as exc:
            self.quiet.failure("build", "cannot read the usage ledger: %s", exc)
            return
        self.quiet.success("build", "usage ledger readable again")
        if documents.try_publish(self.path, document, self.quiet, compact=True):
            self.published += 1

    def host_energy(self, intervals: list[ledger.Interval], now: float) -> build.HostEnergy | None:
        """The host plug's daily kWh and online draw from the power history (read-only)."""
        power = self.config.power
        plug = power.host_plug() if isinstance(power, PowerConfig) else None
        if plug is None or power is None:
            return None
        path = power_history.database_path(power, self.config.private_dir)
        if not path.exists():
            return build.HostEnergy(plug=plug.name, daily_kwh={}, online_draw_w=None)
        history = power_history.History(path, tz=self.tz)
        try:
            history.open(readonly=True)
            return _energy(history, plug.name, intervals, now, self.tz)
        except sqlite3.Error as exc:  # the power daemon's file is its own business
            self.quiet.failure("power", "cannot read the power history %s: %s", path, exc)
            return build.HostEnergy(plug=plug.name, daily_kwh={}, online_draw_w=None)
        finally:
            history.close()


def _energy(history: power_history.History, plug: str, intervals: list[ledger.Interval],
            now: float, tz: tzinfo | None) -> build.HostEnergy:
    today = power_history.Calendar(tz).day(now)
    rows = history.days(today - timedelta(days=WINDOW_DAYS), today, plug)
    daily = {row.day: row.e / MWMS_PER_KWH for row in rows if row.dt > 0}
    energy = duration = 0
    for first, end in build.online_minutes(intervals, now):
        e, dt = history.energy(first, end, plug)
        energy += e
        duration += dt
    draw = energy / duration / 1000 if duration else None  # mW·ms / ms = mW → W
    return build.HostEnergy(plug=plug, daily_kwh=daily, online_draw_w=draw)


def ledger_state(status: sm.HostStatus) -> str:
    """The state an interval records: "unknown" until the Pi has ever heard from the host
    (those hours are neither up nor asleep), else the machine's state."""
    return UNKNOWN if status.reason == sm.NEVER_SEEN else status.state.value
