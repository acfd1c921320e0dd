"""Energy history in sqlite (WAL): each control tick, 1-minute aggregates, audited 15-minute
slots and daily totals; ``energy.json`` is built from it.

Batched like the power history: the daemon queues ticks and commits them at most once per
``[control] history_commit_s`` in one transaction (the raw ticks, the minutes they touch
recomputed from what is stored, the slots that closed audited, the days touched, retention).
Units are integers where sums must be exact: W, ms, SoC in 0.1 %; minutes store energy in
10 J and durations in 100 ms (small rows: a year stays under 30 MB) and read back in J and ms.
Synchronous: the daemon runs it in its own database thread. Retention: ticks 14 days,
minutes and slots ~400 days, days forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import Any

from pi.control import audit
from pi.control.audit import Measured, SlotPlan
from pi.power.history import Calendar, connect_wal, open_or_set_aside

log = logging.getLogger(__name__)

DATABASE = "energy.sqlite3"
SCHEMA_VERSION = 1
SLOT_S = 900
MS_PER_MINUTE = 60_000
# What a tick's mode is stored as (a small integer: a year of minutes stays small).
MODES = ("safe_unverified", "safe", "normal", "hold", "charge", "discharge", "limit_export")
OVERRIDE_FLAG = 16  # added to the mode code while a manual override is in force
_SLOT_PLAN_FIELDS = [f.name for f in dataclasses.fields(SlotPlan)]
_AUDIT_FIELDS = ["import_j", "export_j", "pv_j", "load_j", "soc_start", "soc_end", "cost",
                 "base_import_j", "base_export_j", "base_cost", "base_end_wh", "saving"]
# Rowid tables keyed by their INTEGER PRIMARY KEY: the key costs no bytes in the row, and
# appends fill pages (a year of minutes stays small).
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS raw (ts INTEGER PRIMARY KEY, dt INTEGER NOT NULL, soc INTEGER,
                                bat INTEGER, grid INTEGER, pv INTEGER, load INTEGER,
                                mode INTEGER NOT NULL, writes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS minute (minute INTEGER PRIMARY KEY, dt INTEGER NOT NULL,
                                   imp INTEGER NOT NULL, exp INTEGER NOT NULL,
                                   chg INTEGER NOT NULL, dis INTEGER NOT NULL,
                                   pv INTEGER NOT NULL, load INTEGER NOT NULL, soc INTEGER,
                                   mode INTEGER NOT NULL, writes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS slot (start INTEGER PRIMARY KEY, plan_id TEXT, mode TEXT,
                                 {', '.join(f + ' REAL' for f in _SLOT_PLAN_FIELDS[3:])},
                                 audited INTEGER NOT NULL DEFAULT 0,
                                 {', '.join(f + ' REAL' for f in _AUDIT_FIELDS)});
CREATE TABLE IF NOT EXISTS plan (id TEXT PRIMARY KEY, seq INTEGER, valid_from INTEGER,
                                 valid_until INTEGER, savings_eur REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily (day TEXT PRIMARY KEY, dt INTEGER NOT NULL,
                                  imp INTEGER NOT NULL, exp INTEGER NOT NULL,
                                  chg INTEGER NOT NULL, dis INTEGER NOT NULL,
                                  pv INTEGER NOT NULL, load INTEGER NOT NULL,
                                  writes INTEGER NOT NULL, slots INTEGER NOT NULL,
                                  cost REAL, base_cost REAL, saving REAL) WITHOUT ROWID;
"""

# The statements over the slot table, built once from the constant column lists above.
_SLOT_COLUMNS = [*_SLOT_PLAN_FIELDS, "audited", *_AUDIT_FIELDS]
_UPSERT_SLOT = (f"INSERT INTO slot ({', '.join(_SLOT_PLAN_FIELDS)}) VALUES "  # noqa: S608
                f"({', '.join('?' * len(_SLOT_PLAN_FIELDS))}) ON CONFLICT (start) DO UPDATE SET "
                + ", ".join(f"{f} = excluded.{f}" for f in _SLOT_PLAN_FIELDS[1:]) + ", audited = 0")
_OPEN_SLOTS = (f"SELECT {', '.join(_SLOT_PLAN_FIELDS)} FROM slot "  # noqa: S608
               "WHERE NOT audited AND start + ? <= ? ORDER BY start")
_AUDITED = (f"UPDATE slot SET audited = 1, {', '.join(f + ' = ?' for f in _AUDIT_FIELDS)} "  # noqa: S608
            "WHERE start = ?")
_SLOTS = (f"SELECT {', '.join(_SLOT_COLUMNS)} FROM slot "  # noqa: S608
          "WHERE start >= ? AND start < ? ORDER BY start")


@dataclass(frozen=True, slots=True)
class Tick:
    """One control tick; it covers the ``dt`` ms before ``ts`` (ms since the epoch)."""

    ts: int  # its minute is (ts - 1) // 60000: the tick ends at ts
    dt: int
    soc: int | None  # 0.1 %
    battery_w: int | None  # + charging
    grid_w: int | None  # + import
    pv_w: int | None
    load_w: int | None
    mode: int  # MODES index (+ OVERRIDE_FLAG)
    writes: int


@dataclass(frozen=True, slots=True)
class PlanInfo:
    id: str
    seq: int
    valid_from: int
    valid_until: int
    savings_eur: float | None


def mode_code(mode: str, override: bool = False) -> int:
    return (MODES.index(mode) if mode in MODES else 0) + (OVERRIDE_FLAG if override else 0)


def mode_name(code: int) -> str:
    base = code & (OVERRIDE_FLAG - 1)
    return MODES[base] if base < len(MODES) else "unknown"


class EnergyHistory:
    """One writer's handle on the database; not thread-safe (one thread uses it)."""

    def __init__(self, path: Path, *, tz: tzinfo | None = None, raw_retention_days: int = 14,
                 minute_retention_days: int = 400) -> None:
        self.path = path
        self.calendar = Calendar(tz)
        self.raw_retention_ms = raw_retention_days * 86_400_000
        self.minute_retention = minute_retention_days * 1440
        self._db: sqlite3.Connection | None = None
        self.last_ts: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating) the database; a file that is not one is moved aside, never lost."""
        open_or_set_aside(self.path, "energy history", self._open, self.close)

    def _open(self) -> None:
        self._db = connect_wal(self.path, _SCHEMA, SCHEMA_VERSION)
        self.last_ts = self._db.execute("SELECT max(ts) FROM raw").fetchone()[0]

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
            raise RuntimeError("energy history is not open")
        return self._db

    # -- writing -------------------------------------------------------------------------

    def commit(self, ticks: Sequence[Tick], slots: Iterable[SlotPlan],
               plans: Iterable[PlanInfo], now: float) -> int:
        """Store a batch, its aggregates and audits, and apply retention: one transaction."""
        now_ms = int(now * 1000)
        raw_cutoff = (now_ms - self.raw_retention_ms) // MS_PER_MINUTE * MS_PER_MINUTE
        kept = [t for t in ticks if t.ts >= raw_cutoff]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for info in plans:
                db.execute("INSERT OR REPLACE INTO plan VALUES (?, ?, ?, ?, ?)",
                           (info.id, info.seq, info.valid_from, info.valid_until, info.savings_eur))
            for plan in slots:
                values = [getattr(plan, f) for f in _SLOT_PLAN_FIELDS]
                db.execute(_UPSERT_SLOT, values)
            if kept:
                self._store(kept)
            self._audit_closed()
            db.execute("DELETE FROM raw WHERE ts < ?", (raw_cutoff,))
            horizon = now_ms // MS_PER_MINUTE - self.minute_retention
            db.execute("DELETE FROM minute WHERE minute < ?", (horizon,))
            db.execute("DELETE FROM slot WHERE start < ?", (horizon * 60,))
            db.execute("DELETE FROM plan WHERE valid_until < ?", (horizon * 60,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        if kept:
            self.last_ts = max(self.last_ts or 0, *(t.ts for t in kept))
        return len(kept)

    def _store(self, ticks: Sequence[Tick]) -> None:
        db = self.db
        db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(t.ts, t.dt, t.soc, t.battery_w, t.grid_w, t.pv_w, t.load_w, t.mode,
                         t.writes) for t in ticks])
        lo = (min(t.ts for t in ticks) - 1) // MS_PER_MINUTE
        hi = (max(t.ts for t in ticks) - 1) // MS_PER_MINUTE
        # Stored small (a year of minutes stays small): energies in 10 J (W × ms / 10 000),
        # durations in 100 ms, rounded once per minute; read back in J and ms.
        db.execute(
            "INSERT OR REPLACE INTO minute SELECT (ts - 1) / 60000, (sum(dt) + 50) / 100, "
            "(sum(max(coalesce(grid, 0), 0) * dt) + 5000) / 10000, "
            "(sum(max(-coalesce(grid, 0), 0) * dt) + 5000) / 10000, "
            "(sum(max(coalesce(bat, 0), 0) * dt) + 5000) / 10000, "
            "(sum(max(-coalesce(bat, 0), 0) * dt) + 5000) / 10000, "
            "(sum(coalesce(pv, 0) * dt) + 5000) / 10000, "
            "(sum(coalesce(load, 0) * dt) + 5000) / 10000, "
            "(SELECT r.soc FROM raw r WHERE (r.ts - 1) / 60000 = (raw.ts - 1) / 60000 "
            " AND r.soc IS NOT NULL "
            " ORDER BY r.ts DESC LIMIT 1), "
            "(SELECT r.mode FROM raw r WHERE (r.ts - 1) / 60000 = (raw.ts - 1) / 60000 "
            " ORDER BY r.ts DESC "
            " LIMIT 1), sum(writes) "
            "FROM raw WHERE ts > ? AND ts <= ? GROUP BY (ts - 1) / 60000",
            (lo * MS_PER_MINUTE, (hi + 1) * MS_PER_MINUTE))
        days = sorted({self.calendar.day_ms(t.ts - 1) for t in ticks})
        for day in days:
            self._store_day(day)

    def _store_day(self, day: date) -> None:
        first, end = self.calendar.minutes(day)
        db = self.db
        db.execute(
            "INSERT OR REPLACE INTO daily SELECT ?, coalesce(sum(dt), 0), coalesce(sum(imp), 0), "
            "coalesce(sum(exp), 0), coalesce(sum(chg), 0), coalesce(sum(dis), 0), "
            "coalesce(sum(pv), 0), coalesce(sum(load), 0), coalesce(sum(writes), 0), "
            "(SELECT count(*) FROM slot WHERE audited AND start >= ? AND start < ?), "
            "(SELECT sum(cost) FROM slot WHERE audited AND start >= ? AND start < ?), "
            "(SELECT sum(base_cost) FROM slot WHERE audited AND start >= ? AND start < ?), "
            "(SELECT sum(saving) FROM slot WHERE audited AND start >= ? AND start < ?) "
            "FROM minute WHERE minute >= ? AND minute < ?",
            (day.isoformat(), *(first * 60, end * 60) * 4, first, end))

    def _audit_closed(self) -> None:
        """Audit every slot that has ended (by the newest tick) and is not audited yet."""
        db = self.db
        newest = db.execute("SELECT max(ts) FROM raw").fetchone()[0]
        if newest is None:
            return
        rows = db.execute(_OPEN_SLOTS, (SLOT_S, newest // 1000)).fetchall()
        days: set[date] = set()
        for row in rows:
            plan = SlotPlan(*row)
            result, measured = self.audit_slot(plan)
            db.execute(_AUDITED,
                       (measured.import_j, measured.export_j, measured.pv_j, measured.load_j,
                        measured.soc_start, measured.soc_end, result.cost_eur,
                        _whole(result.baseline_import_j), _whole(result.baseline_export_j),
                        result.baseline_cost_eur, result.baseline_end_wh, result.saving_eur,
                        plan.start))
            days.add(self.calendar.day(plan.start))
        for day in sorted(days):
            self._store_day(day)

    def audit_slot(self, plan: SlotPlan) -> tuple[audit.SlotAudit, Measured]:
        """A slot's audit from its stored minutes (also for the slot still running)."""
        measured = self.measured(plan.start)
        prev = self.db.execute("SELECT plan_id, base_end_wh FROM slot WHERE start = ? AND audited",
                               (plan.start - SLOT_S,)).fetchone()
        carried = prev[1] if prev is not None and prev[0] == plan.plan_id else None
        return audit.audit(plan, measured, carried), measured

    def measured(self, start: int) -> Measured:
        first, end = start // 60, (start + SLOT_S) // 60
        db = self.db
        dt, imp, exp, pv, load = db.execute(
            "SELECT coalesce(sum(dt), 0) * 100, coalesce(sum(imp), 0) * 10, "
            "coalesce(sum(exp), 0) * 10, coalesce(sum(pv), 0) * 10, coalesce(sum(load), 0) * 10 "
            "FROM minute "
            "WHERE minute >= ? AND minute < ?", (first, end)).fetchone()
        before = db.execute("SELECT soc FROM raw WHERE ts <= ? AND ts > ? AND soc IS NOT NULL "
                            "ORDER BY ts DESC LIMIT 1", (start * 1000, (start - 120) * 1000)).fetchone()
        if before is None:
            before = db.execute("SELECT soc FROM minute WHERE minute >= ? AND minute < ? AND soc "
                                "IS NOT NULL ORDER BY minute LIMIT 1", (first, end)).fetchone()
        after = db.execute("SELECT soc FROM minute WHERE minute >= ? AND minute < ? AND soc IS NOT "
                           "NULL ORDER BY minute DESC LIMIT 1", (first, end)).fetchone()
        return Measured(dt / 1000, imp, exp, pv, load,
                        None if before is None else before[0] / 10,
                        None if after is None else after[0] / 10)

    # -- reading -------------------------------------------------------------------------

    def slots(self, first: int, end: int) -> list[dict[str, Any]]:
        """Slot rows (plan and audit) with ``first <= start < end``, as dicts."""
        return [dict(zip(_SLOT_COLUMNS, row, strict=True))
                for row in self.db.execute(_SLOTS, (first, end))]

    def minutes(self, first: int, end: int) -> list[tuple[int, ...]]:
        """(minute, dt, imp, exp, chg, dis, pv, load, soc, mode, writes) for ``first <= minute < end``."""
        return self.db.execute("SELECT minute, dt * 100, imp * 10, exp * 10, chg * 10, dis * 10, "
                               "pv * 10, load * 10, soc, mode, writes FROM minute "
                               "WHERE minute >= ? AND minute < ? ORDER BY minute",
                               (first, end)).fetchall()

    def days(self, first: date, last: date) -> list[tuple[Any, ...]]:
        """(day, dt, imp, exp, chg, dis, pv, load, writes, slots, cost, base_cost, saving)."""
        return self.db.execute("SELECT day, dt * 100, imp * 10, exp * 10, chg * 10, dis * 10, "
                               "pv * 10, load * 10, writes, slots, cost, base_cost, saving "
                               "FROM daily WHERE day BETWEEN ? AND ? ORDER BY day",
                               (first.isoformat(), last.isoformat())).fetchall()

    def plan(self, plan_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT p.seq, p.valid_from, p.valid_until, p.savings_eur, "
            "(SELECT count(*) FROM slot WHERE start >= p.valid_from AND start < p.valid_until "
            " AND plan_id = p.id AND audited), "
            "(SELECT sum(saving) FROM slot WHERE start >= p.valid_from AND start < p.valid_until "
            " AND plan_id = p.id AND audited) "
            "FROM plan p WHERE id = ?", (plan_id,)).fetchone()
        if row is None:
            return None
        return {"id": plan_id, "seq": row[0], "valid_from": row[1], "valid_until": row[2],
                "forecast_saving_eur": row[3], "audited_slots": row[4],
                "realised_saving_eur": row[5],
                "slots": (row[2] - row[1]) // SLOT_S}

    def latest_plan_id(self) -> str | None:
        row = self.db.execute("SELECT id FROM plan ORDER BY valid_from DESC, seq DESC "
                              "LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def grid_integral_j(self, first_ms: int, end_ms: int) -> float:
        """Σ grid W × dt over the raw ticks (J): what the audit's totals must add up to."""
        (value,) = self.db.execute("SELECT coalesce(sum(grid * dt), 0) FROM raw "
                                   "WHERE ts > ? AND ts <= ?", (first_ms, end_ms)).fetchone()
        return float(value) / 1000


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def day_range(calendar: Calendar, day: date) -> tuple[int, int]:
    """``day`` as Unix seconds [start, end)."""
    return int(calendar.start(day)), int(calendar.start(day + timedelta(days=1)))
