"""Power history in sqlite (WAL): raw samples, 1-minute aggregates, daily energy.

Every batch is one transaction: the raw samples, the minutes and days they touch
(recomputed from what is stored, so a batch may span any outage), and retention. Units are
integers so sums are exact: power in mW, durations in ms, energy ``e`` in mW·ms.
Synchronous: the daemon runs it in its own database thread.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING

from handshake.errors import FatalError, TemporaryError
from handshake.util import privatefile

if TYPE_CHECKING:
    from pi.power.config import PowerConfig

log = logging.getLogger(__name__)


class NewerSchema(Exception):
    """The history was written by a newer edgepair: leave it alone."""

DATABASE = "power.sqlite3"
SCHEMA_VERSION = 1
MS_PER_MINUTE = 60_000
MWMS_PER_WH = 3_600_000_000  # 1 Wh = 3600 J = 3.6e9 mW·ms
# Page cache: power.json reads ~1-2 days of minutes; the default 2 MB only costs RSS.
CACHE_KIB = 1024
# A busy reader (the export CLI) holds the write lock at most this long.
BUSY_TIMEOUT_S = 5.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS plugs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                                  last_ts INTEGER);
CREATE TABLE IF NOT EXISTS raw (ts INTEGER NOT NULL, plug INTEGER NOT NULL, w INTEGER NOT NULL,
                                dt INTEGER NOT NULL, today_wh INTEGER, month_wh INTEGER,
                                PRIMARY KEY (ts, plug)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minute (minute INTEGER NOT NULL, plug INTEGER NOT NULL,
                                   n INTEGER NOT NULL, e INTEGER NOT NULL, dt INTEGER NOT NULL,
                                   w_min INTEGER NOT NULL, w_max INTEGER NOT NULL,
                                   PRIMARY KEY (minute, plug)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily (day TEXT NOT NULL, plug INTEGER NOT NULL, n INTEGER NOT NULL,
                                  e INTEGER NOT NULL, dt INTEGER NOT NULL, plug_wh INTEGER,
                                  plug_ts INTEGER, PRIMARY KEY (day, plug)) WITHOUT ROWID;
"""


def database_path(power: PowerConfig, private_dir: Path) -> Path:
    """``[power] database``, by default ``power.sqlite3`` in the Pi's private state."""
    return power.database or private_dir / DATABASE


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one plug; it covers the ``dt`` ms before ``ts`` (ms since the epoch)."""

    plug: str
    ts: int
    w: int  # mW
    dt: int  # ms
    today_wh: int | None = None
    month_wh: int | None = None


@dataclass(frozen=True, slots=True)
class MinuteRow:
    plug: str
    minute: int  # minutes since the epoch
    n: int
    e: int  # mW·ms
    dt: int  # ms
    w_min: int
    w_max: int


@dataclass(frozen=True, slots=True)
class DayRow:
    plug: str
    day: str  # local date, YYYY-MM-DD
    n: int
    e: int
    dt: int
    plug_wh: int | None  # the plug's own counter, last value seen that day


class Calendar:
    """Local dates for timestamps: ``tz`` None means the Pi's own zone (DST-aware)."""

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz
        self._last: tuple[int, int, date] = (0, 0, date.min)  # [start, end) ms of a day

    def day(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def day_ms(self, ts_ms: int) -> date:
        """``day`` for milliseconds, remembering the last day's bounds (batches are sorted)."""
        start, end, day = self._last
        if not start <= ts_ms < end:
            day = self.day(ts_ms / 1000)
            start, end = (round(self.start(day) * 1000),
                          round(self.start(day + timedelta(days=1)) * 1000))
            self._last = (start, end, day)
        return day

    def start(self, day: date) -> float:
        """The first instant of ``day`` as a Unix timestamp."""
        return datetime.combine(day, dtime(), tzinfo=self.tz).timestamp()

    def minutes(self, day: date) -> tuple[int, int]:
        """``day`` as a half-open range of minute numbers."""
        return (int(self.start(day)) // 60, int(self.start(day + timedelta(days=1))) // 60)


class History:
    """One writer's handle on the database; not thread-safe (one thread uses it)."""

    def __init__(self, path: Path, *, tz: tzinfo | None = None, raw_retention_days: int = 14,
                 minute_retention_days: int = 400) -> None:
        self.path = path
        self.calendar = Calendar(tz)
        self.raw_retention_ms = raw_retention_days * 86_400_000
        self.minute_retention = minute_retention_days * 1440
        self._db: sqlite3.Connection | None = None
        self._ids: dict[str, int] = {}
        self.last_ts: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def open(self, *, readonly: bool = False) -> None:
        """Open (creating) the database; a file that is not one is moved aside, never lost.

        ``readonly`` (the export CLI, while the daemon writes): no changes, errors propagate.
        """
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                       timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._load_plugs()
            return
        open_or_set_aside(self.path, "power history", self._open, self.close)

    def _open(self) -> None:
        self._db = connect_wal(self.path, _SCHEMA, SCHEMA_VERSION)
        self._load_plugs()

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("history is not open")
        return self._db

    # -- writing -------------------------------------------------------------------------

    def commit(self, samples: Sequence[Sample], now: float) -> int:
        """Store a batch with its aggregates and apply retention, in one transaction.

        Returns the number of samples stored (samples older than the raw retention are
        dropped: their minutes could no longer be recomputed).
        """
        now_ms = int(now * 1000)
        # whole minutes only: a minute is recomputed from its raw rows, all or none of them
        raw_cutoff = (now_ms - self.raw_retention_ms) // MS_PER_MINUTE * MS_PER_MINUTE
        kept = [s for s in samples if s.ts >= raw_cutoff]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = {name: self._plug_id(name) for name in {s.plug for s in kept}}
            if kept:
                self._store(kept, ids)
            db.execute("DELETE FROM raw WHERE ts < ?", (raw_cutoff,))
            db.execute("DELETE FROM minute WHERE minute < ?",
                       (now_ms // MS_PER_MINUTE - self.minute_retention,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._load_plugs()  # a rolled-back new plug has no id
            raise
        for s in kept:
            self.last_ts[s.plug] = max(self.last_ts.get(s.plug, s.ts), s.ts)
        return len(kept)

    def _store(self, samples: Sequence[Sample], ids: dict[str, int]) -> None:
        db = self.db
        db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?, ?, ?, ?)",
                       [(s.ts, ids[s.plug], s.w, s.dt, s.today_wh, s.month_wh) for s in samples])
        lo = min(s.ts for s in samples) // MS_PER_MINUTE
        hi = max(s.ts for s in samples) // MS_PER_MINUTE
        db.execute(
            "INSERT OR REPLACE INTO minute (minute, plug, n, e, dt, w_min, w_max) "
            "SELECT ts / 60000, plug, count(*), sum(w * dt), sum(dt), min(w), max(w) FROM raw "
            "WHERE ts >= ? AND ts < ? GROUP BY ts / 60000, plug",
            (lo * MS_PER_MINUTE, (hi + 1) * MS_PER_MINUTE))
        counters: dict[tuple[str, int], tuple[int, int]] = {}
        days: set[date] = set()
        for s in samples:
            day = self.calendar.day_ms(s.ts)
            days.add(day)
            if s.today_wh is not None:
                key = (day.isoformat(), ids[s.plug])
                if key not in counters or counters[key][1] <= s.ts:
                    counters[key] = (s.today_wh, s.ts)
        for day in sorted(days):
            first, end = self.calendar.minutes(day)
            db.execute(
                "INSERT INTO daily (day, plug, n, e, dt) "
                "SELECT ?, plug, sum(n), sum(e), sum(dt) FROM minute "
                "WHERE minute >= ? AND minute < ? GROUP BY plug "
                "ON CONFLICT (day, plug) DO UPDATE SET n = excluded.n, e = excluded.e, "
                "dt = excluded.dt", (day.isoformat(), first, end))
        db.executemany(
            "UPDATE daily SET plug_wh = ?, plug_ts = ? WHERE day = ? AND plug = ? "
            "AND (plug_ts IS NULL OR plug_ts <= ?)",
            [(wh, ts, day, plug, ts) for (day, plug), (wh, ts) in counters.items()])
        last: dict[int, int] = {}
        for s in samples:
            last[ids[s.plug]] = max(last.get(ids[s.plug], s.ts), s.ts)
        db.executemany("UPDATE plugs SET last_ts = max(coalesce(last_ts, 0), ?) WHERE id = ?",
                       [(ts, plug) for plug, ts in last.items()])

    def _plug_id(self, name: str) -> int:
        if name not in self._ids:
            cursor = self.db.execute("INSERT INTO plugs (name) VALUES (?)", (name,))
            assert cursor.lastrowid is not None
            self._ids[name] = cursor.lastrowid
        return self._ids[name]

    def _load_plugs(self) -> None:
        self._ids.clear()
        for plug_id, name, last_ts in self.db.execute("SELECT id, name, last_ts FROM plugs"):
            self._ids[name] = plug_id
            if last_ts is not None:
                self.last_ts[name] = max(self.last_ts.get(name, last_ts), last_ts)

    # -- reading -------------------------------------------------------------------------

    def minutes(self, first: int, last: int, plug: str | None = None) -> list[MinuteRow]:
        """Minute rows with ``first <= minute <= last`` (one plug, or every plug)."""
        names = {i: n for n, i in self._ids.items()}
        sql = "SELECT minute, plug, n, e, dt, w_min, w_max FROM minute WHERE minute BETWEEN ? AND ?"
        args: tuple[int, ...] = (first, last)
        if plug is not None:
            if plug not in self._ids:
                return []
            sql += " AND plug = ?"
            args += (self._ids[plug],)
        return [MinuteRow(names.get(p, str(p)), m, n, e, dt, lo, hi)
                for m, p, n, e, dt, lo, hi in self.db.execute(sql + " ORDER BY minute", args)]

    def minute_energy(self, first: int, last: int) -> dict[str, list[tuple[int, int, int]]]:
        """``(minute, e, dt)`` per plug for ``first <= minute <= last``: what a series needs."""
        names = {i: n for n, i in self._ids.items()}
        out: dict[str, list[tuple[int, int, int]]] = {}
        for minute, plug, e, dt in self.db.execute(
                "SELECT minute, plug, e, dt FROM minute WHERE minute BETWEEN ? AND ?", (first, last)):
            out.setdefault(names.get(plug, str(plug)), []).append((minute, e, dt))
        return out

    def days(self, first: date, last: date, plug: str | None = None) -> list[DayRow]:
        """Daily rows for local dates ``first`` to ``last`` inclusive."""
        names = {i: n for n, i in self._ids.items()}
        sql = "SELECT day, plug, n, e, dt, plug_wh FROM daily WHERE day BETWEEN ? AND ?"
        args: tuple[object, ...] = (first.isoformat(), last.isoformat())
        if plug is not None:
            if plug not in self._ids:
                return []
            sql += " AND plug = ?"
            args += (self._ids[plug],)
        return [DayRow(names.get(p, str(p)), d, n, e, dt, wh)
                for d, p, n, e, dt, wh in self.db.execute(sql + " ORDER BY day", args)]

    def energy(self, first: int, end: int, plug: str) -> tuple[int, int]:
        """``(e, dt)`` summed over one plug's minutes ``first <= minute < end``."""
        if plug not in self._ids:
            return 0, 0
        e, dt = self.db.execute(
            "SELECT coalesce(sum(e), 0), coalesce(sum(dt), 0) FROM minute "
            "WHERE plug = ? AND minute >= ? AND minute < ?", (self._ids[plug], first, end)).fetchone()
        return int(e), int(dt)

    def plugs(self) -> list[str]:
        return sorted(self._ids)



class Pending:
    """Samples not committed yet, in arrival order; each covers the time since the one before.

    A sample after a failed poll, or after a gap longer than ``max_gap_s`` (a restart),
    covers one nominal interval only: a gap stays a gap, never energy made up.
    """

    def __init__(self, last_ts: dict[str, int] | None = None, *, limit: int = 50_000) -> None:
        self.last_ts = dict(last_ts or {})
        self.samples: list[Sample] = []
        self.limit = limit
        self.dropped = 0
        self._failed: set[str] = set()  # plugs whose last poll failed

    def failed(self, plug: str) -> None:
        """The plug's poll failed: its next sample covers one interval, not the gap."""
        self._failed.add(plug)

    def add(self, plug: str, at: float, w: float, today_wh: int | None, month_wh: int | None,
            *, interval_s: float, max_gap_s: float) -> Sample | None:
        """Queue one reading; None when the clock went back past the plug's last sample."""
        ts = round(at * 1000)
        last = self.last_ts.get(plug)
        if last is not None and ts <= last:
            return None
        gap = None if last is None or plug in self._failed else ts - last
        self._failed.discard(plug)
        dt = gap if gap is not None and gap <= max_gap_s * 1000 else round(interval_s * 1000)
        sample = Sample(plug, ts, round(w * 1000), dt, today_wh, month_wh)
        self.last_ts[plug] = ts
        self.samples.append(sample)
        if len(self.samples) > self.limit:  # the database has been failing for hours
            del self.samples[0]
            self.dropped += 1
        return sample

    def take(self) -> list[Sample]:
        taken, self.samples = self.samples, []
        return taken

    def put_back(self, samples: list[Sample]) -> None:
        """A failed commit: keep its samples for the next try (oldest first)."""
        self.samples[:0] = samples
        overflow = len(self.samples) - self.limit
        if overflow > 0:
            del self.samples[:overflow]
            self.dropped += overflow


# -- one way to open a history database (the power and the energy history share it) -----

def open_or_set_aside(path: Path, what: str, connect: Callable[[], None],
                      close: Callable[[], None]) -> None:
    """``connect()``; a file that is not a database is moved aside (never lost) and a new
    one made. Locked, full, read-only or an I/O error: the file may be fine and hold years
    of history, so it stays, and the error says so (systemd retries)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connect()
    except sqlite3.OperationalError as exc:
        close()
        raise TemporaryError(f"cannot open the {what} {path}: {exc}") from exc
    except NewerSchema as exc:
        close()
        raise FatalError(f"{path}: {exc}; upgrade edgepair (or move the file "
                         "aside to start a new history)") from exc
    except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
        close()
        privatefile.set_aside_database(path, exc, log=log)
        connect()


def connect_wal(path: Path, schema: str, schema_version: int) -> sqlite3.Connection:
    """A WAL connection to ``path`` with ``schema`` applied; NewerSchema (closed) when the
    file was written by a newer edgepair."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL never corrupts; a power cut may lose the last commits, a killed
        # process loses nothing committed. FULL would fsync on every commit (SD wear).
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema_version:
            raise NewerSchema(f"schema version {version} is newer than this edgepair's "
                              f"({schema_version})")
        db.executescript(schema)
        db.execute(f"PRAGMA user_version={schema_version}")
    except BaseException:
        db.close()
        raise
    return db
