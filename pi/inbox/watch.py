"""The inbox's eyes: inotify (watchdog) events and full scans, as changes for the loop.

Handlers run in watchdog's thread; each event is turned into a ``Change`` (with a fresh
``lstat``) and handed to the asyncio loop with ``call_soon_threadsafe``. The same observer
watches ``host.json`` in the public folder, so a change of the host's state is seen at once.
"""

from __future__ import annotations

import asyncio
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from pi.inbox import safeopen
from pi.inbox.outcome import FileChanged
from pi.inbox.tracker import Identity, ignored

# Observer threads check for stop this often: bounds how long shutdown waits for them.
OBSERVER_TIMEOUT_S = 0.2
HOST_JSON = "host.json"
# No FileOpenedEvent and no FileDeletedEvent: each of our own reads and deletes would wake
# three watchdog threads for nothing. A file a user deletes is noticed when its send finds
# it gone, or by the next rescan (its folder's deletion is reported at once).
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileAttribEvent, FileMovedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]


@dataclass(frozen=True, slots=True)
class Change:
    """``kind``: created, written, closed, seen, moved, gone, folder (scan it), folder_gone,
    host."""

    kind: str
    rel: str = ""
    dest: str = ""
    identity: Identity | None = None


def scan(root: Path, folder: str = "") -> dict[str, Identity]:
    """Every regular, not ignored file below ``root/folder`` (blocking: run in a thread),
    found through real folders only (``safeopen.walk``)."""
    found: dict[str, Identity] = {}
    for rel_dir, _, entries in safeopen.walk(root, folder, lambda rel: not ignored(rel)):
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if ignored(rel):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[rel] = Identity.of(st)
    return found


class Watcher(FileSystemEventHandler):
    """Watches the inbox (recursively) and host.json; runs ``emit(change)`` in the loop."""

    def __init__(self, root: Path, public_dir: Path, emit: Callable[[Change], None]) -> None:
        self.root = root
        self.public_dir = public_dir
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._observer = Observer(timeout=OBSERVER_TIMEOUT_S)

    def start(self) -> None:
        # watchdog warns when a folder made with its parents (mkdir -p) gets its watch twice;
        # the second registration replaces the first, which is what we want anyway.
        warnings.filterwarnings("ignore", message="Callback with id .* already exists",
                                category=RuntimeWarning, module="watchdog")
        self._observer.schedule(self, str(self.root), recursive=True, event_filter=_EVENTS)
        self._observer.schedule(self, str(self.public_dir), recursive=False,
                                event_filter=[FileCreatedEvent, FileMovedEvent, FileModifiedEvent,
                                              FileClosedEvent])
        self._observer.start()

    def stop(self) -> None:
        """Blocking (joins the threads): call it from a worker thread."""
        self._observer.stop()
        self._observer.join()

    def on_any_event(self, event: FileSystemEvent) -> None:
        for change in self._changes(event):
            self._loop.call_soon_threadsafe(self._emit, change)

    def _changes(self, event: FileSystemEvent) -> list[Change]:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if not event.is_directory and self.public_dir / HOST_JSON in (Path(src), Path(dest)):
            return [Change("host")]
        rel, rel_dest = self._rel(src), self._rel(dest)
        if isinstance(event, (DirDeletedEvent, DirMovedEvent, DirCreatedEvent)):
            return _folder_changes(event, rel, rel_dest)
        if isinstance(event, FileDeletedEvent):
            return _one("gone", rel)
        if isinstance(event, FileMovedEvent):
            identity = self._identity(rel_dest) if rel_dest else None
            if identity is None:
                return _one("gone", rel)
            return [Change("moved", rel or "", rel_dest or "", identity)]
        if rel is None:
            return []
        identity = self._identity(rel)
        if identity is None:
            return [Change("gone", rel)]
        kind = _FILE_KINDS.get(type(event), "seen")
        if event.is_synthetic:  # watchdog's own "created" for files in a folder moved in
            kind = "seen"
        return [Change(kind, rel, identity=identity)]

    def _rel(self, path: str) -> str | None:
        """The path relative to the inbox; None outside it or for ignored names."""
        if not path.startswith(f"{self.root}/"):
            return None
        rel = path[len(str(self.root)) + 1:]
        return None if ignored(rel) else rel

    def _identity(self, rel: str) -> Identity | None:
        try:
            st = safeopen.lstat(self.root, rel)
        except (OSError, FileChanged):  # gone, or a link where a folder was
            return None
        return Identity.of(st) if stat.S_ISREG(st.st_mode) else None


_FILE_KINDS: dict[type[FileSystemEvent], str] = {
    FileCreatedEvent: "created", FileModifiedEvent: "written", FileClosedEvent: "closed"}


def _one(kind: str, rel: str | None) -> list[Change]:
    """``[Change(kind, rel)]``, or nothing for a path outside the inbox (or ignored)."""
    return [Change(kind, rel)] if rel else []


def _folder_changes(event: FileSystemEvent, rel: str | None,
                    rel_dest: str | None) -> list[Change]:
    """A folder deleted, created or moved (in, out or within the inbox)."""
    if isinstance(event, DirDeletedEvent):
        return _one("folder_gone", rel)
    if isinstance(event, DirMovedEvent):
        # A folder moved in brings files no event will mention: scan it.
        return _one("folder_gone", rel) + _one("folder", rel_dest)
    return _one("folder", rel)
