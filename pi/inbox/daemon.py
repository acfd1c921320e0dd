"""The inbox daemon: watch the drop folder, forward ready files while the host is online.

One loop owns all state (the tracker, the sender, inbox.json); inotify events, finished
sends and timers wake it. Sends run as tasks (``sender``), at most ``[inbox] parallel``
at once; each deletes its file only after the host confirmed the same SHA-256 (``upload``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from handshake import documents, inboxwire
from handshake.client import HandshakeClient
from handshake.documents import HostDocument, InboxDocument
from handshake.errors import ConfigError, PeerUnavailable, RequestError
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from pi.config import PiConfig
from pi.inbox import safeopen, status, upload
from pi.inbox.config import InboxConfig
from pi.inbox.outcome import FileChanged
from pi.inbox.sender import Sender, parents
from pi.inbox.tracker import Tracker
from pi.inbox.watch import HOST_JSON, Change, Watcher, scan

log = logging.getLogger(__name__)

# The loop kicks the systemd watchdog (WatchdogSec=30) at least this often.
WATCHDOG_LOOPS = ("inbox",)
TICK_S = 5.0
# inbox.json at most this often while things change (a 10,000-file flush, progress).
PUBLISH_GAP_S = 0.5


async def run(config: PiConfig, *, ready: Callable[[], None],
              kick: Callable[[str], None]) -> None:
    """Run the inbox daemon until cancelled."""
    inbox = config.inbox
    if not isinstance(inbox, InboxConfig):
        raise ConfigError([f"{config.file}: [inbox]: the inbox daemon needs this section"])
    await Inbox(config, inbox, config.secrets().handshake_key).run(ready, kick)


def api_url(config: PiConfig) -> str:
    """The Pi's own api daemon (for wake requests)."""
    host, port = config.api.listen
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Inbox:
    """The daemon's state and loop; clocks are injectable for tests."""

    def __init__(self, config: PiConfig, inbox: InboxConfig, key: bytes, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config, self.inbox, self.key = config, inbox, key
        self.root = inbox.dir
        self.clock, self.wall = clock, wall
        self.tracker = Tracker(inbox.settle_s, small_bytes=inboxwire.SMALL_FILE_BYTES)
        self.report = status.Report(started_at=wall())
        self.sender = Sender(self.root, self.tracker, self.report, inbox.parallel,
                             inbox.parallel_small, on_done=self._poke, on_deleted=self._emptied,
                             clock=clock, wall=wall)
        self.changes: list[Change] = []
        self.wakeup = asyncio.Event()
        self.prune: dict[str, float] = {}
        self.dirty = True
        self.published_at = -math.inf
        self.next_rescan = 0.0
        self.quiet = QuietLogger(log)
        self.api: HandshakeClient | None = None

    async def run(self, ready: Callable[[], None], kick: Callable[[str], None]) -> None:
        await asyncio.to_thread(_make_dirs, self.root, self.config.public_dir)
        for path in await asyncio.to_thread(upload.restore_aside, self.root):
            log.info("%s: back under its name after an interrupted delete; it is sent again",
                     path)
        async with aiohttp.ClientSession() as session:
            self.sender.client = HandshakeClient(self.config.host.url, self.key, session)
            self.api = HandshakeClient(api_url(self.config), self.key, session)
            watcher = Watcher(self.root, self.config.public_dir, self._on_change)
            await asyncio.to_thread(watcher.start)
            try:
                await self._rescan()
                await self._read_host()
                log.info("inbox %s: %d file(s) waiting; host %s", self.root,
                         len(self.tracker.files), self.report.host_state)
                await self._publish()
                ready()
                while True:
                    kick("inbox")
                    await self.step()
                    await self._sleep()
            finally:
                await self.sender.stop()
                await asyncio.to_thread(watcher.stop)
                with contextlib.suppress(OSError):
                    await self._publish()

    async def step(self) -> None:
        """One pass: apply changes, start or stop sends, prune, publish, maybe wake."""
        changes, self.changes = self.changes, []
        for change in changes:
            await self._apply(change)
        if any(c.kind == "host" for c in changes):
            await self._read_host()
        now = self.clock()
        if now >= self.next_rescan:
            await self._rescan()
            await self._read_host()
        if self.tracker.ripen(now):
            self.dirty = True  # more files ready: inbox.json, maybe a wake
        online = self.report.host_state == "online"
        if online:
            self.sender.start(now)
        elif self.sender.tasks:
            log.info("host is %s: %d send(s) stopped; they go again when it is back",
                     self.report.host_state, len(self.sender.tasks))
            await self.sender.stop()
        self.sender.end_flush(now, online)
        if self.prune:
            await self._prune(now)
        if self.sender.tasks:
            self.dirty = True  # progress
        if (self.dirty and now - self.published_at >= PUBLISH_GAP_S) \
                or now - self.published_at >= self.inbox.publish_interval_s:
            await self._publish()

    # -- changes -----------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        self.changes.append(change)
        self.wakeup.set()

    def _poke(self) -> None:
        self.dirty = True
        self.wakeup.set()

    def _emptied(self, rel: str) -> None:
        for folder in parents(rel):
            self.prune[folder] = self.clock() + self.inbox.settle_s

    async def _apply(self, change: Change) -> None:
        now, t = self.clock(), self.tracker
        log.debug("change %s", change)
        self.dirty = True
        if change.kind == "gone":
            if change.rel not in self.sender.tasks:
                t.gone(change.rel)
        elif change.kind == "folder_gone":
            t.gone_below(change.rel)
        elif change.kind == "folder":
            for rel, identity in (await asyncio.to_thread(scan, self.root, change.rel)).items():
                t.seen(rel, identity, now)
        elif change.identity is not None:
            apply = {"moved": None, "created": t.created, "written": t.written,
                     "closed": t.closed}.get(change.kind, t.seen)
            if apply is None:
                t.moved(change.rel, change.dest, change.identity, now)
            else:
                apply(change.rel, change.identity, now)

    async def _rescan(self) -> None:
        """The full scan: files inotify missed appear, files gone without a word go."""
        started = self.clock()
        found = await asyncio.to_thread(scan, self.root)
        now = self.clock()
        for rel, identity in found.items():
            self.tracker.seen(rel, identity, now)
        for rel, entry in list(self.tracker.files.items()):
            if rel not in found and not entry.busy and entry.changed_at < started:
                self.tracker.gone(rel)
        for rel in [r for r in self.sender.digests if r not in self.tracker.files]:
            del self.sender.digests[rel]
        self.next_rescan = now + self.inbox.rescan_s
        self.dirty = True

    async def _read_host(self) -> None:
        host = await asyncio.to_thread(documents.read_or_none,
                                       self.config.public_dir / HOST_JSON, HostDocument)
        state = None if host is None else host.state
        if state != self.report.host_state:
            log.info("host is %s", state or "unknown (no host.json yet)")
            self.report.host_state = state
            self.sender.host_changed()
            self.dirty = True

    # -- folders, inbox.json, wake -------------------------------------------------------

    async def _prune(self, now: float) -> None:
        due = sorted((f for f, t in self.prune.items() if t <= now), key=len, reverse=True)
        if not due:
            return
        later = await asyncio.to_thread(_prune_folders, self.root, due, self.inbox.settle_s,
                                        self.wall())
        for folder in due:
            self.prune.pop(folder, None)
        for folder in later:
            self.prune[folder] = now + self.inbox.settle_s

    async def _publish(self) -> None:
        now, wall = self.clock(), self.wall()
        pending, to_hash = status.pending(self.tracker, now, self.sender.known,
                                          inboxwire.SMALL_FILE_BYTES)
        self.report.in_flight = [p for _, p in self.sender.tasks.values()]
        document = status.document(self.inbox, pending, self.report, wall)
        try:
            await asyncio.to_thread(documents.publish,
                                    self.config.public_dir / documents.FILES[InboxDocument],
                                    document)
            self.quiet.success("publish", "inbox.json written again")
        except OSError as exc:
            self.quiet.failure("publish", "cannot write inbox.json: %s", exc)
        self.published_at = now
        self.dirty = False
        # Hash ahead only what would wait anyway: a free slot sends (and hashes) at once.
        waits = (self.report.host_state != "online" or now < self.sender.retry_at
                 or self.sender.in_flight(small=False) >= self.inbox.parallel)
        self.sender.hash_ahead(to_hash if waits else None)
        if status.wake_due(self.inbox, self.report.host_state, pending, wall,
                           self.report.wake_requested_at):
            await self._wake(pending)

    async def _wake(self, pending: status.Pending) -> None:
        assert self.api is not None
        self.report.wake_requested_at = self.wall()
        self.dirty = True
        log.info("waking the host: %d ready file(s), %d bytes waiting", pending.ready_files,
                 pending.ready_bytes)
        try:
            await self.api.request("POST", "/api/v1/wake", {"source": "inbox"})
        except (PeerUnavailable, RequestError) as exc:
            log.warning("wake request to the api daemon failed: %s", exc)
            self.report.last_error = {"at": iso(self.wall()), "message": f"wake: {exc}",
                                      "path": None}

    async def _sleep(self) -> None:
        now = self.clock()
        timeout = min(TICK_S, max(0.0, self.next_rescan - now),
                      max(0.0, self.published_at + self.inbox.publish_interval_s - now))
        if self.dirty or self.sender.tasks:
            timeout = min(timeout, max(0.0, self.published_at + PUBLISH_GAP_S - now))
        due = self.tracker.next_due()
        if due is not None:
            timeout = min(timeout, max(0.0, due - now))
        if self.report.host_state == "online" and now < self.sender.retry_at:
            timeout = min(timeout, self.sender.retry_at - now)
        if self.prune:
            timeout = min(timeout, max(0.0, min(self.prune.values()) - now))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()
        self.wakeup.clear()


def _make_dirs(*folders: Path) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)


def _prune_folders(root: Path, folders: list[str], settle_s: float, now: float) -> list[str]:
    """Remove emptied folders (deepest first) quiet for ``settle_s``; those to try later.

    Each is reached through real folders only (``safeopen``), never through a link."""
    later = []
    for folder in folders:
        try:
            with safeopen.parent(root, folder) as (parent, name):
                if now - os.stat(name, dir_fd=parent, follow_symlinks=False).st_mtime < settle_s:
                    later.append(folder)
                    continue
                os.rmdir(name, dir_fd=parent)
        except FileChanged:
            continue  # a link where a folder was: nothing of ours to remove
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST, errno.ENOTDIR):
                log.debug("cannot remove emptied folder %s: %s", root / folder, exc)
    return later
