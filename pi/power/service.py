"""The power daemon's loops: poll each plug, batch samples into sqlite, publish power.json.

Plugs are injected (``PlugLink``), so tests drive the same loops with fakes or emulated
plugs. All disk work (sqlite, the atomic power.json) runs in one database thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from handshake import documents
from handshake.documents import PowerDocument
from handshake.errors import FatalError
from handshake.util.quietlog import QuietLogger
from pi.config import PiConfig
from pi.power import publish
from pi.power.config import PowerConfig
from pi.power.health import STALE_INTERVALS, PlugError, PlugLink, PlugStatus, implausible
from pi.power.history import History, Pending, Sample, database_path

log = logging.getLogger("pi.power")

T = TypeVar("T")
POWER_JSON = "power.json"
# The main loop wakes at least this often: it kicks the watchdog (deadline 10 s).
TICK_S = 5.0
# A plug's health changing (its first reading, failing, answering again) is published at
# once instead of at the next publish_interval_s, but not more often than this (SD wear).
NEWS_MIN_GAP_S = 1.0


class HistoryError(FatalError):
    """The history database cannot be opened (permissions, a full disk)."""


class PowerService:
    """Owns the plugs' status, the pending batch, the history database and power.json."""

    def __init__(self, config: PiConfig, power: PowerConfig, links: dict[str, PlugLink], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.power = power
        self.links = links
        self.clock = clock
        self.statuses = {p.name: PlugStatus(p) for p in power.plugs}
        tz = ZoneInfo(config.schedule.timezone) if config.schedule.timezone else None
        self.history = History(database_path(power, config.private_dir), tz=tz,
                               raw_retention_days=power.raw_retention_days,
                               minute_retention_days=power.minute_retention_days)
        self.pending = Pending()
        self.quiet = QuietLogger(log)
        self.commits = 0
        self.news = asyncio.Event()  # a plug's health changed: publish without waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="power-db")

    @property
    def path(self) -> Path:
        return self.config.public_dir / POWER_JSON

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- the loops -----------------------------------------------------------------------

    async def run(self, ready: Callable[[], None], kick: Callable[[str], None]) -> None:
        """Until cancelled; a clean stop commits the pending batch and publishes once more."""
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.open()
            tasks = [asyncio.create_task(self._plug_loop(name), name=f"power-{name}")
                     for name in self.statuses]
            await self.publish()
            ready()
            log.info("power: watching %s", ", ".join(
                f"{p.name} ({p.address}, {p.encryption})" for p in self.power.plugs))
            next_commit = loop.time() + self.power.commit_interval_s
            next_publish = loop.time() + self.power.publish_interval_s
            last_publish = loop.time()
            while True:
                kick("power")
                now = loop.time()
                if now >= next_commit:
                    await self.flush()
                    next_commit = max(next_commit + self.power.commit_interval_s, loop.time())
                if self.news.is_set() and now - last_publish >= NEWS_MIN_GAP_S:
                    next_publish = now  # e.g. the first reading: on screen now, not in 10 s
                if now >= next_publish:
                    self.news.clear()
                    await self.publish()
                    last_publish = loop.time()
                    next_publish = max(next_publish + self.power.publish_interval_s, loop.time())
                wake = min(next_commit, next_publish, now + TICK_S)
                if self.news.is_set():
                    wake = min(wake, last_publish + NEWS_MIN_GAP_S)
                    await asyncio.sleep(max(0.0, wake - loop.time()))
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.news.wait(), max(0.0, wake - loop.time()))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(link.close() for link in self.links.values()),
                                 return_exceptions=True)
            try:
                if self.history.is_open:
                    await self._db(self._last_words, self.pending.take(), self._snapshot())
            finally:
                self._executor.shutdown(wait=True)

    async def _plug_loop(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        status = self.statuses[name]
        while True:
            started = loop.time()
            await self.poll(name)
            delay = status.next_poll_in(self.power.max_backoff_s)
            await asyncio.sleep(max(0.0, started + delay - loop.time()))

    # -- steps (tests drive these with an injected clock) --------------------------------

    async def open(self) -> None:
        """Open the history; a directory the daemon cannot write is a clear, fatal error."""
        try:
            await self._db(self.history.open)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"cannot open the power history {self.history.path}: {exc}") from exc
        self.pending = Pending(self.history.last_ts)

    async def close(self) -> None:
        """Close the history and stop the database thread (after open(), without run())."""
        try:
            await self._db(self.history.close)
        finally:
            self._executor.shutdown(wait=True)

    async def poll(self, name: str) -> None:
        """Read one plug; a failure leaves a gap and a health flag, never an exception.

        A change of the plug's health (its first reading, failing, answering again) sets
        ``news``: power.json follows at once rather than at the next publish period.
        """
        status = self.statuses[name]
        before = status.health(self.clock())
        try:
            await self._poll(status)
        finally:
            if status.health(self.clock()) != before:
                self.news.set()

    async def _poll(self, status: PlugStatus) -> None:
        name = status.config.name
        try:
            reading = await self.links[name].read()
        except PlugError as exc:
            self._failed(status, exc)
            return
        except Exception as exc:  # a bug in a link must not stop the other plugs
            self._failed(status, PlugError("stale", f"unexpected error: {exc!r}"))
            return
        problem = implausible(reading)
        if problem is not None:  # never stored, never shown as live
            self._failed(status, PlugError("stale", problem))
            return
        ended = status.succeeded(reading)
        self.quiet.success(f"plug:{name}", "plug %s answers again (after %d failed polls): %.1f W",
                           name, ended, reading.w)
        plug = status.config
        self.pending.add(name, reading.at, reading.w, reading.today_wh, reading.month_wh,
                         interval_s=plug.interval_s, max_gap_s=STALE_INTERVALS * plug.interval_s)

    def _failed(self, status: PlugStatus, error: PlugError) -> None:
        name = status.config.name
        self.pending.failed(name)
        if status.failure is not None and status.failure != error.kind:
            self.quiet.failing.discard(f"plug:{name}")  # a different failure is news: warn again
        status.failed(error)
        # Keyed apart from "history"/"publish": a plug may well be named so.
        self.quiet.failure(f"plug:{name}", "plug %s is %s: %s (next try in %.3g s)", name, error.kind,
                           error, status.next_poll_in(self.power.max_backoff_s))

    async def flush(self) -> None:
        """Commit the pending batch (one transaction for every plug)."""
        samples = self.pending.take()
        if not samples:
            return
        try:
            await self._db(self._commit, samples)
        except (sqlite3.Error, OSError) as exc:
            self.pending.put_back(samples)
            self.quiet.failure("history", "cannot write the power history %s: %s (keeping %d "
                               "samples in memory)", self.history.path, exc, len(self.pending.samples))
        else:
            self.quiet.success("history", "the power history is writable again")

    async def publish(self) -> None:
        try:
            await self._db(self._publish, self._snapshot())
        except (sqlite3.Error, OSError) as exc:
            self.quiet.failure("publish", "cannot publish %s: %s", self.path, exc)
        else:
            self.quiet.success("publish", "%s is published again", self.path)

    # -- database thread -----------------------------------------------------------------

    def _snapshot(self) -> tuple[float, list[PlugStatus], list[Sample]]:
        """What the database thread needs, copied: the loop keeps changing the originals."""
        return (self.clock(), [dataclasses.replace(s) for s in self.statuses.values()],
                list(self.pending.samples))

    def _commit(self, samples: list[Sample]) -> None:
        self.history.commit(samples, self.clock())
        self.commits += 1

    def _publish(self, snapshot: tuple[float, list[PlugStatus], list[Sample]]) -> None:
        now, statuses, pending = snapshot
        documents.publish(self.path, self.document(now, statuses, pending), compact=True)

    def document(self, now: float, statuses: list[PlugStatus],
                 pending: list[Sample]) -> PowerDocument:
        window = publish.Window.at(now, self.history.calendar)
        minutes = self.history.minute_energy(window.first_minute, window.last_minute)
        days = self.history.days(date.fromisoformat(window.first_day),
                                 date.fromisoformat(window.today))
        return publish.document(now, self.power.publish_interval_s, self.history.calendar,
                                statuses, minutes, days, pending)

    def _last_words(self, samples: list[Sample],
                    snapshot: tuple[float, list[PlugStatus], list[Sample]]) -> None:
        try:
            if samples:
                self._commit(samples)
            self._publish((snapshot[0], snapshot[1], []))
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            log.error("could not save the last %d power samples: %s", len(samples), exc)
        finally:
            self.history.close()

