"""The receipt ledger: which (path, SHA-256) the host has taken, even after the user moved it.

sqlite (stdlib, WAL) under the host's ``private/``: one row per file, written once, read on
every upload; tinydb would rewrite the whole file per receipt. One process writes it (the
agent); calls come from worker threads, serialized by a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handshake.documents import InboxReceivedDocument, schema_of
from handshake.util.timeutil import iso

RECEIVED_SCHEMA = schema_of(InboxReceivedDocument)
# inbox-received.json lists this many of the newest files.
RECENT_FILES = 50

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    stored_as TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (path, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_received_at ON receipts (received_at);
"""


@dataclass(frozen=True, slots=True)
class Receipt:
    path: str
    sha256: str
    bytes: int
    stored_as: str
    received_at: float

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256,
                "received_at": iso(self.received_at), "stored_as": self.stored_as}


class Ledger:
    """Receipts by (path, sha256); a receipt is durable before the Pi hears "stored"."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # One owner (this agent): no file locking per transaction, and a second agent on
        # the same state_dir fails loudly instead of sharing the ledger.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL (WAL): a commit is atomic but reaches the disk at the next checkpoint, which
        # saves an fsync per file. A receipt lost to power loss is harmless: the file it
        # names was fsynced under its final name first, and a re-send is recognized there
        # by its content (store.Upload.place); the Pi deletes only after the answer anyway.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def lookup(self, path: str, sha256: str) -> Receipt | None:
        with self._lock:
            row = self._db.execute(
                "SELECT path, sha256, bytes, stored_as, received_at FROM receipts "
                "WHERE path = ? AND sha256 = ?", (path, sha256)).fetchone()
        return None if row is None else Receipt(*row)

    def record(self, receipt: Receipt) -> Receipt:
        """Store ``receipt``; the one already there when the pair was recorded before."""
        with self._lock:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO receipts (path, sha256, bytes, stored_as, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (receipt.path, receipt.sha256, receipt.bytes, receipt.stored_as,
                 receipt.received_at)).rowcount
        return receipt if inserted else (self.lookup(receipt.path, receipt.sha256) or receipt)

    def record_many(self, receipts: list[Receipt]) -> list[Receipt]:
        """Store several receipts in one transaction (one commit for a batch of files)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO receipts (path, sha256, bytes, stored_as, "
                    "received_at) VALUES (?, ?, ?, ?, ?)",
                    [(r.path, r.sha256, r.bytes, r.stored_as, r.received_at) for r in receipts])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return [self.lookup(r.path, r.sha256) or r for r in receipts]

    def document(self, now: float) -> InboxReceivedDocument:
        """inbox-received.json: totals and the newest files."""
        with self._lock:
            total_files, total_bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM receipts").fetchone()
            rows = self._db.execute(
                "SELECT path, sha256, bytes, stored_as, received_at FROM receipts "
                "ORDER BY received_at DESC LIMIT ?", (RECENT_FILES,)).fetchall()
        return InboxReceivedDocument(generated_at=iso(now) or "", total_files=total_files,
                                     total_bytes=total_bytes,
                                     files=[Receipt(*row).to_json() for row in rows])

    def close(self) -> None:
        with self._lock:
            self._db.close()
