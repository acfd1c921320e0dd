"""The job log: every execution (due, sent, done/failed/missed, result) in sqlite under
private/. Its one writer is the node daemon; ``INSERT OR IGNORE`` on the id makes creating
the same occurrence twice a no-op."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pi.nodes.jobs import OPEN, Execution

FILE = "node-jobs.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
  id TEXT PRIMARY KEY, job TEXT NOT NULL, node TEXT NOT NULL, capability TEXT NOT NULL,
  params TEXT NOT NULL, due REAL NOT NULL, status TEXT NOT NULL, sent_at REAL,
  done_at REAL, result TEXT, leader TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS executions_open ON executions(status) WHERE status IN ('pending', 'sent');
CREATE INDEX IF NOT EXISTS executions_job ON executions(job, due);
CREATE TABLE IF NOT EXISTS jobs_seen (id TEXT PRIMARY KEY, since REAL NOT NULL);
"""
_SELECT_OPEN = ("SELECT id, job, node, capability, params, due, status, sent_at, done_at, result, "
                "leader FROM executions WHERE status IN ('pending', 'sent')")
_SELECT_ID = ("SELECT id, job, node, capability, params, due, status, sent_at, done_at, result, "
              "leader FROM executions WHERE id = ?")
_SELECT_RECENT = ("SELECT id, job, node, capability, params, due, status, sent_at, done_at, "
                  "result, leader FROM executions ORDER BY due DESC LIMIT ?")
_SELECT_RECENT_JOB = ("SELECT id, job, node, capability, params, due, status, sent_at, done_at, "
                      "result, leader FROM executions WHERE job = ? ORDER BY due DESC LIMIT ?")
_INSERT = ("INSERT OR IGNORE INTO executions (id, job, node, capability, params, due, status, "
           "sent_at, done_at, result, leader, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class JobLog:
    """Executions in sqlite (WAL). Open ones are also kept in memory: polls read them."""

    def __init__(self, path: Path, clock: Any = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.clock = clock
        self.open: dict[str, Execution] = {
            e.id: e for e in self._select(_SELECT_OPEN)}

    def close(self) -> None:
        self.db.close()

    def since(self, job: str) -> float:
        """When the daemon first knew this job (occurrences before it are not owed)."""
        row = self.db.execute("SELECT since FROM jobs_seen WHERE id = ?", (job,)).fetchone()
        if row is not None:
            return float(row[0])
        now = self.clock()
        self.db.execute("INSERT OR IGNORE INTO jobs_seen VALUES (?, ?)", (job, now))
        return float(now)

    def known(self, id_: str) -> bool:
        return id_ in self.open or self.db.execute(
            "SELECT 1 FROM executions WHERE id = ?", (id_,)).fetchone() is not None

    def get(self, id_: str) -> Execution | None:
        if id_ in self.open:
            return self.open[id_]
        found = self._select(_SELECT_ID, (id_,))
        return found[0] if found else None

    def add(self, execution: Execution) -> bool:
        """Store a new execution; False when its id exists (nothing changes)."""
        cursor = self.db.execute(_INSERT, (*_row(execution), self.clock()))
        if cursor.rowcount and execution.status in OPEN:
            self.open[execution.id] = execution
        return bool(cursor.rowcount)

    def update(self, execution: Execution) -> None:
        self.db.execute("UPDATE executions SET status = ?, sent_at = ?, done_at = ?, result = ? "
                        "WHERE id = ?", (execution.status, execution.sent_at, execution.done_at,
                                         _json(execution.result), execution.id))
        if execution.status in OPEN:
            self.open[execution.id] = execution
        else:
            self.open.pop(execution.id, None)

    def sent(self, execution: Execution, now: float) -> Execution:
        if execution.status == "sent":
            return execution
        updated = replace(execution, status="sent", sent_at=now)
        self.update(updated)
        return updated

    def finish(self, id_: str, status: str, result: Any, now: float, *,
               node: str) -> Execution | None:
        """Record ``node``'s result; None when the execution is unknown, already final or
        another node's (a node cannot close what it was not sent)."""
        execution = self.open.get(id_)
        if execution is None or execution.node != node:
            return None
        final = replace(execution, status=status, result=result, done_at=now)
        self.update(final)
        return final

    def recent(self, limit: int = 50, job: str | None = None) -> list[Execution]:
        if job is None:
            return self._select(_SELECT_RECENT, (limit,))
        return self._select(_SELECT_RECENT_JOB, (job, limit))

    def _select(self, sql: str, args: tuple[Any, ...] = ()) -> list[Execution]:
        return [Execution(id=r[0], job=r[1], node=r[2], capability=r[3], params=json.loads(r[4]),
                          due=r[5], status=r[6], sent_at=r[7], done_at=r[8],
                          result=None if r[9] is None else json.loads(r[9]), leader=r[10])
                for r in self.db.execute(sql, args)]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _row(e: Execution) -> tuple[Any, ...]:
    return (e.id, e.job, e.node, e.capability, json.dumps(e.params), e.due, e.status,
            e.sent_at, e.done_at, _json(e.result), e.leader)
