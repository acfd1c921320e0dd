"""The usage ledger in sqlite (WAL): every host state interval and every wake, in batches.

SD cards wear: what the host did is kept in memory and reaches the database at most once
per ``commit_interval_s`` (and on a clean stop), one transaction per batch; a crash loses
at most that much. The interval in progress is stored open (``end_ms`` NULL) and closed on
restart from the state the api daemon restored. Times are integer ms since the epoch.
Synchronous and thread-safe: the service runs it in its own database thread.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from handshake.errors import FatalError, TemporaryError
from handshake.util import privatefile

log = logging.getLogger(__name__)

DATABASE = "usage.sqlite3"
SCHEMA_VERSION = 1
DAY_MS = 86_400_000
# A reader (a CLI, the benchmark) holds the write lock at most this long.
BUSY_TIMEOUT_S = 5.0
# What waits for a failing database is bounded (a wake storm for hours): the oldest go.
MAX_PENDING = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS intervals (start_ms INTEGER PRIMARY KEY, end_ms INTEGER,
                                      state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS intervals_end ON intervals (end_ms);
CREATE TABLE IF NOT EXISTS wakes (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
                                  reason TEXT NOT NULL, client TEXT);
CREATE INDEX IF NOT EXISTS wakes_at ON wakes (at_ms);
"""


@dataclass(frozen=True, slots=True)
class Interval:
    """The host was in ``state`` from ``start_ms`` to ``end_ms`` (None: still is)."""

    start_ms: int
    end_ms: int | None
    state: str


@dataclass(frozen=True, slots=True)
class Wake:
    at_ms: int
    reason: str
    client: str | None = None


@dataclass(frozen=True, slots=True)
class View:
    """What the ledger knows (stored and pending), oldest first."""

    intervals: list[Interval]
    wakes: list[Wake]


def database_path(private_dir: Path) -> Path:
    return private_dir / DATABASE


class Ledger:
    """The one writer of the usage database; records in memory, commits in batches."""

    def __init__(self, path: Path, *, retention_days: int = 400, commit_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.retention_ms = retention_days * DAY_MS
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self.commits = 0  # transactions committed (the benchmark and the tests count them)
        self.last_commit = clock()  # the first batch waits a full interval too
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the pending records
        self._db_lock = threading.Lock()  # the connection (one statement stream at a time)
        self._current: Interval | None = None
        self._closed: list[Interval] = []
        self._wakes: list[Wake] = []
        self._dirty = False

    # -- lifecycle -----------------------------------------------------------------------

    def open(self, state: str, since: float) -> None:
        """Open (creating) the database and take up the restored ``state`` since ``since``.

        An interval left open by a crash or a stop is closed where the restored state
        began (or kept, when it is that state); the restored one is the interval in progress.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.close()
            if isinstance(exc, sqlite3.OperationalError):  # locked, full, read-only
                raise TemporaryError(f"cannot open the usage ledger {self.path}: {exc}") from exc
            privatefile.set_aside_database(self.path, exc, log=log)
            self._open()
        since_ms = round(since * 1000)
        row = self.db.execute("SELECT start_ms, state FROM intervals WHERE end_ms IS NULL "
                              "ORDER BY start_ms DESC LIMIT 1").fetchone()
        with self._lock:
            if row is not None and row[1] == state and row[0] <= since_ms:
                self._current = Interval(row[0], None, state)  # the same state goes on
            else:
                if row is not None:
                    self._closed.append(Interval(row[0], max(row[0], since_ms), row[1]))
                    self._dirty = True
                self._current = Interval(since_ms, None, state)
                self._dirty = True
        # Any other open row (two crashes in a row) ends where the next one starts.
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("UPDATE intervals SET end_ms = (SELECT min(i.start_ms) FROM intervals i "
                        "WHERE i.start_ms > intervals.start_ms) WHERE end_ms IS NULL AND "
                        "start_ms < ?", (row[0] if row is not None else since_ms,))
        self.db.execute("COMMIT")

    def _open(self) -> None:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                             check_same_thread=False)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL never corrupts; FULL would fsync on every commit (SD wear).
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise FatalError(f"{self.path}: schema version {version} is newer than this "
                             f"edgepair's ({SCHEMA_VERSION}); upgrade edgepair")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._db_lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("usage ledger is not open")
        return self._db

    # -- recording (the event loop; memory only) -----------------------------------------

    def transition(self, state: str, at: float) -> None:
        """The host entered ``state`` at ``at``: the interval in progress ends there."""
        at_ms = round(at * 1000)
        with self._lock:
            current = self._current
            if current is not None:
                if current.state == state:
                    return
                self._closed.append(Interval(current.start_ms, max(at_ms, current.start_ms),
                                             current.state))
                del self._closed[:-MAX_PENDING]
            self._current = Interval(at_ms, None, state)
            self._dirty = True

    def wake(self, at: float, reason: str, client: str | None) -> None:
        with self._lock:
            self._wakes.append(Wake(round(at * 1000), reason, client))
            del self._wakes[:-MAX_PENDING]
            self._dirty = True

    # -- committing (the database thread) ------------------------------------------------

    def due(self, now: float) -> bool:
        """Something waits and the last commit is at least ``commit_interval_s`` old."""
        return self._dirty and now - self.last_commit >= self.commit_interval_s

    def commit(self, now: float | None = None) -> bool:
        """Write what waits in one transaction and apply retention; False when nothing did."""
        now = self.clock() if now is None else now
        with self._lock:
            if not self._dirty:
                return False
            closed, wakes, current = list(self._closed), list(self._wakes), self._current
        with self._db_lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [*closed, *([current] if current is not None else [])]
                db.executemany("INSERT OR REPLACE INTO intervals (start_ms, end_ms, state) "
                               "VALUES (?, ?, ?)", [(i.start_ms, i.end_ms, i.state) for i in rows])
                db.executemany("INSERT INTO wakes (at_ms, reason, client) VALUES (?, ?, ?)",
                               [(w.at_ms, w.reason, w.client) for w in wakes])
                cutoff = round(now * 1000) - self.retention_ms
                db.execute("DELETE FROM intervals WHERE end_ms IS NOT NULL AND end_ms < ?",
                           (cutoff,))
                db.execute("DELETE FROM wakes WHERE at_ms < ?", (cutoff,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self.commits += 1
            with self._lock:  # under the db lock: a view never sees a record twice
                del self._closed[:len(closed)]
                del self._wakes[:len(wakes)]
                self._dirty = bool(self._closed or self._wakes or self._current != current)
        self.last_commit = now
        return True

    # -- reading ---------------------------------------------------------------------------

    def view(self, since: float) -> View:
        """Intervals that end at or after ``since`` and wakes from it on, stored or pending."""
        since_ms = round(since * 1000)
        with self._db_lock:
            stored = [Interval(s, e, st) for s, e, st in self.db.execute(
                "SELECT start_ms, end_ms, state FROM intervals WHERE end_ms IS NULL OR "
                "end_ms >= ? ORDER BY start_ms", (since_ms,))]
            stored_wakes = [Wake(a, r, c) for a, r, c in self.db.execute(
                "SELECT at_ms, reason, client FROM wakes WHERE at_ms >= ? ORDER BY at_ms, id",
                (since_ms,))]
            with self._lock:
                closed, wakes, current = list(self._closed), list(self._wakes), self._current
        by_start = {i.start_ms: i for i in stored}
        for interval in [*closed, *([current] if current is not None else [])]:
            by_start[interval.start_ms] = interval
        intervals = [i for _, i in sorted(by_start.items())
                     if i.end_ms is None or i.end_ms >= since_ms]
        # Only the newest interval may be open: a stored open row the memory has closed is
        # overwritten above, one from before a restart was closed by ``open``.
        return View(intervals, stored_wakes + [w for w in wakes if w.at_ms >= since_ms])
