"""The public files the mqtt daemon reads, and the watchdog observer that says when they change.

A file that exists but cannot be read (half a document, a wrong schema) keeps its last
usable content, marked unavailable: its entities go "unavailable" in Home Assistant instead
of vanishing and coming back. A file that does not exist has no entities (its daemon is not
configured). nodes.json (issue 12) is read as raw JSON, tolerantly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from handshake import documents
from handshake.documents import (
    ControlDocument,
    Document,
    DocumentError,
    HostDocument,
    InboxDocument,
    PiDocument,
    PowerDocument,
    UsageDocument,
)
from handshake.errors import ValidationError
from handshake.messages import loads
from handshake.util.quietlog import QuietLogger
from pi.mqtt.entities import SOURCES, Source

log = logging.getLogger("pi.mqtt")

KINDS: dict[str, type[Document]] = {
    "host": HostDocument, "pi": PiDocument, "power": PowerDocument, "inbox": InboxDocument,
    "control": ControlDocument, "usage": UsageDocument,
}
NODES_SCHEMA = "edgepair.nodes/1"
# Observer threads check for stop this often: bounds how long shutdown waits for them.
OBSERVER_TIMEOUT_S = 0.2
# Public files are rewritten by rename (handshake.util.atomic): a move into the folder.
# A writer that rewrites in place is seen when it closes the file.
_EVENTS: list[type[FileSystemEvent]] = [FileMovedEvent, FileClosedEvent]
_FILES = {f"{name}.json": name for name in SOURCES}


def read(public_dir: Path, name: str, previous: Source | None, now: float,
         quiet: QuietLogger) -> Source | None:
    """``name``'s public file now; None when there is none."""
    path = public_dir / f"{name}.json"
    try:
        found = _read_nodes(path, now) if name == "nodes" else _read_document(path, name, now)
    except (DocumentError, ValidationError) as exc:
        quiet.failure(f"read:{name}", "mqtt: %s is unusable, its entities are unavailable: %s",
                      path, exc)
        return None if previous is None else Source(previous.document, available=False)
    quiet.success(f"read:{name}", "mqtt: %s is readable again", path)
    return found


def _read_document(path: Path, name: str, now: float) -> Source | None:
    document = documents.read(path, KINDS[name])
    return None if document is None else Source(document, available=not document.stale(now))


def _read_nodes(path: Path, now: float) -> Source | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from None
    raw: Any = loads(data)
    if not isinstance(raw, dict) or raw.get("schema") != NODES_SCHEMA:
        got = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise DocumentError(f"expected {NODES_SCHEMA!r}, got {got!r}", "schema")
    header = documents.header(path)
    if header is None:
        raise DocumentError("expected an ISO 8601 time with zone", "generated_at")
    return Source(raw, available=not header.stale(now))


class Watcher(FileSystemEventHandler):
    """Calls ``changed(name)`` in the loop when one of the public files is replaced."""

    def __init__(self, public_dir: Path, changed: Callable[[str], None]) -> None:
        self.public_dir = public_dir
        self._changed = changed
        self._loop = asyncio.get_running_loop()
        self._observer = Observer(timeout=OBSERVER_TIMEOUT_S)

    def start(self) -> None:
        self.public_dir.mkdir(parents=True, exist_ok=True)
        self._observer.schedule(self, str(self.public_dir), recursive=False,
                                event_filter=_EVENTS)
        self._observer.start()

    def stop(self) -> None:
        """Blocking (joins the threads): call it from a worker thread."""
        self._observer.stop()
        self._observer.join()

    def on_any_event(self, event: FileSystemEvent) -> None:
        target = event.dest_path if isinstance(event, FileMovedEvent) else event.src_path
        name = _FILES.get(os.path.basename(os.fsdecode(target)))
        if name is not None:
            self._loop.call_soon_threadsafe(self._changed, name)
