"""Which files in the inbox are ready: pure bookkeeping, fed by inotify events and rescans.

A file is due when its size, mtime and inode have not changed for ``settle_s`` as
observed here. "Closed" is not "finished" (a client may append in several opens), hence
the settle time. A file seen written to and not seen closed is due as well but flagged
``writing``: it goes only once a read lease proves that nobody has it open for writing
(``upload.writer_present``), or, where Linux can't tell, after OPEN_WITHOUT_CLOSE_S of
quiet. So a writer that pauses longer than settle_s is never cut short, and a lost close
event (or watchdog's "created" for files found in a new folder) holds nothing back.
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass

# Where no lease can tell, a file written to and never seen closed (a lost inotify event,
# a client holding a handle) counts as finished after this long without any change.
OPEN_WITHOUT_CLOSE_S = 3600.0
# DESIGN's temp names, and the ones browsers write while a download is under way (a
# paused download must not be forwarded and removed from the share).
_TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".download")


def ignored(rel: str) -> bool:
    """Temp and hidden names: ``.*`` (also hidden folders), ``~$*``, ``*.part``, ``*.tmp``."""
    parts = rel.split("/")
    if any(p.startswith((".", "~$")) for p in parts):
        return True
    return parts[-1].lower().endswith(_TEMP_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Identity:
    """What must not change between "ready" and "deleted": size, mtime, inode, ctime.

    mtime is the client's to set (SMB SetFileTime, a copy that keeps it) and a freed
    inode is reused at once, so a different file can match size, mtime and inode;
    ctime only the kernel sets, on every change.
    """

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int = 0
    dev: int = 0

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)

    def same_file(self, st: os.stat_result) -> bool:
        """Whether ``st`` is this file's inode with this content (its ctime aside: our own
        rename changes it)."""
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) == (
            self.ino, self.dev, self.size, self.mtime_ns)


@dataclass(slots=True)
class Entry:
    identity: Identity
    changed_at: float
    writing: bool = False
    busy: bool = False
    retry_at: float = 0.0
    failures: int = 0
    # The earliest due time this file has in the tracker's heap (inf: none).
    queued: float = math.inf


class Tracker:
    """Files below the inbox by relative path; ``now`` is a monotonic clock reading.

    Due times sit in a heap and ripe files in a second one (both lazy: stale items are
    skipped when popped), so taking the next ready file stays cheap with 10,000 waiting.
    """

    def __init__(self, settle_s: float, open_without_close_s: float = OPEN_WITHOUT_CLOSE_S,
                 small_bytes: int = 0) -> None:
        self.settle_s = settle_s
        self.open_without_close_s = open_without_close_s
        # Ready files queue by size: small ones (≤ small_bytes) have slots of their own.
        self.small_bytes = small_bytes
        self.files: dict[str, Entry] = {}
        self._due: list[tuple[float, str]] = []
        self._ready: dict[bool, list[tuple[float, str]]] = {True: [], False: []}

    def seen(self, rel: str, identity: Identity, now: float) -> None:
        """A stat from a rescan or a metadata event; a change restarts the settle time."""
        entry = self.files.get(rel)
        if entry is None:
            self.files[rel] = entry = Entry(identity, now)
        elif entry.identity != identity:
            entry.identity = identity
            entry.changed_at = now
            entry.failures = 0
            entry.retry_at = 0.0
        else:
            return
        self._schedule(rel, entry)

    def created(self, rel: str, identity: Identity, now: float) -> None:
        """A new name: most likely open for writing now (watchdog also reports files it
        finds in a new folder as created, long after they were closed: the lease tells)."""
        self._touch(rel, identity, now, writing=True)

    def written(self, rel: str, identity: Identity, now: float) -> None:
        """Modified: open for writing until closed."""
        self._touch(rel, identity, now, writing=True)

    def closed(self, rel: str, identity: Identity, now: float) -> None:
        """Closed after writing: the settle time starts now."""
        self._touch(rel, identity, now, writing=False)

    def changed(self, rel: str, now: float) -> None:
        """The file changed under a send: it settles again."""
        entry = self.files.get(rel)
        if entry is not None:
            entry.changed_at = now
            self._schedule(rel, entry)

    def moved(self, src: str, dest: str, identity: Identity, now: float) -> None:
        entry = self.files.pop(src, None)
        if entry is not None and not entry.busy:
            entry.queued = math.inf  # its heap items carry the old name
            self.files[dest] = entry
        self.seen(dest, identity, now)
        self._schedule(dest, self.files[dest])

    def gone(self, rel: str) -> None:
        self.files.pop(rel, None)

    def gone_below(self, folder: str) -> None:
        prefix = folder.rstrip("/") + "/"
        for rel in [r for r in self.files if r.startswith(prefix)]:
            del self.files[rel]

    def ripen(self, now: float) -> int:
        """Move files whose time has come to the ready queue; how many."""
        moved = 0
        while self._due and self._due[0][0] <= now:
            queued, rel = heapq.heappop(self._due)
            entry = self.files.get(rel)
            if entry is None or entry.busy:
                continue
            if queued <= entry.queued:
                entry.queued = math.inf
            due = self.due(entry)
            if due > now:
                self._schedule(rel, entry)
                continue
            heapq.heappush(self._ready[entry.identity.size <= self.small_bytes], (due, rel))
            moved += 1
        return moved

    def take(self, now: float, small: bool | None = None) -> str | None:
        """The next file to send (marked busy), the longest-waiting first; None if none.

        ``small``: only a file of that size class (True: ≤ small_bytes); None: either.
        """
        self.ripen(now)
        if small is None:
            return self.take(now, True) or self.take(now, False)
        queue = self._ready[small]
        while queue:
            _, rel = heapq.heappop(queue)
            entry = self.files.get(rel)
            if entry is None or entry.busy:
                continue
            if self.due(entry) > now or (entry.identity.size <= self.small_bytes) != small:
                self._schedule(rel, entry)  # changed since it ripened
                continue
            entry.busy = True
            return rel
        return None

    def release(self, rel: str, now: float, retry_in: float | None = None) -> None:
        """A send ended without deleting the file: retry after ``retry_in`` (or when due)."""
        entry = self.files.get(rel)
        if entry is None:
            return
        entry.busy = False
        entry.queued = math.inf  # items popped while it was busy are gone
        if retry_in is not None:
            entry.failures += 1
            entry.retry_at = now + retry_in
        self._schedule(rel, entry)

    def due(self, entry: Entry) -> float:
        return max(entry.changed_at + self.settle_s, entry.retry_at)

    def needs_proof(self, entry: Entry, now: float) -> bool:
        """Seen written, not seen closed, and not quiet long enough to take it as done."""
        return entry.writing and now - entry.changed_at < self.open_without_close_s

    def is_ready(self, entry: Entry, now: float) -> bool:
        return not entry.busy and self.due(entry) <= now

    def next_due(self) -> float | None:
        """When the next file may ripen (maybe early: the loop checks again); call ripen first."""
        while self._due:
            due, rel = self._due[0]
            entry = self.files.get(rel)
            if entry is not None and not entry.busy:
                return due
            heapq.heappop(self._due)
        return None

    def _touch(self, rel: str, identity: Identity, now: float, *, writing: bool) -> None:
        self.seen(rel, identity, now)
        entry = self.files[rel]
        entry.writing = writing
        entry.changed_at = now
        self._schedule(rel, entry)

    def _schedule(self, rel: str, entry: Entry) -> None:
        # An item due earlier than the real time is enough: popping it re-schedules.
        due = self.due(entry)
        if due < entry.queued:
            entry.queued = due
            heapq.heappush(self._due, (due, rel))
