"""The notifier: a task of the api daemon, reading the public files, feeding ``[[notify]]`` targets.

It runs inside the api daemon (no second aiohttp process on a 1 GB Pi) but is kept out of
the failover path: the host loop never awaits it, its file reads and writes run in
threads, every send has a deadline, it has its own HTTP session, and an unexpected error
restarts it after a pause instead of ending the daemon's task group.

Each change of a public file (watchdog) and a tick every ``TICK_S`` run the pure detection
(``detect``); events go to an outbox persisted with the tracked alarms
(``outbox``), and one worker per target delivers its messages in order, retrying a
failing target with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from handshake import documents
from handshake.documents import (
    ControlDocument,
    Document,
    HostDocument,
    InboxDocument,
    PiDocument,
    PowerDocument,
)
from handshake.util.quietlog import QuietLogger
from pi import nodesfile
from pi.config import PiConfig
from pi.notify import detect, outbox
from pi.notify.config import NotifyTarget
from pi.notify.targets import DeliveryError, Sender, make_sender

log = logging.getLogger(__name__)

# Debounce ends and growing inbox ages are checked at least this often without a file change.
TICK_S = 5.0
# A failing target is retried after RETRY_BASE_S × 2^(attempts−1), capped by retry_max_s.
RETRY_BASE_S = 2.0
# After an unexpected error the notifier starts again after this (doubling up to the max).
RESTART_S = 5.0
RESTART_MAX_S = 300.0
# Bursts of file events (several daemons rewriting at once) are read once.
SETTLE_S = 0.05
# Messages kept per target while it is down (a day of flapping alarms is far fewer); past
# this the oldest goes, with an ERROR: the Pi's memory and card are not a mail spool.
MAX_WAITING = 500
_FILES: dict[type[Document], str] = {HostDocument: "host", PowerDocument: "power", PiDocument: "pi",
          InboxDocument: "inbox", ControlDocument: "control"}


class NotifyService:
    """Alarms from the public files, delivered to the configured targets."""

    def __init__(self, config: PiConfig, *, clock: Callable[[], float] = time.time,
                 senders: Mapping[str, Sender] | None = None, tick_s: float = TICK_S,
                 retry_base_s: float = RETRY_BASE_S) -> None:
        self.config = config
        self.targets: dict[str, NotifyTarget] = {t.label: t for t in config.notify}
        self.options = config.notify_options
        self.limits = detect.Limits(
            disk_free_min_pct=self.options.disk_free_min_pct,
            memory_available_min_pct=self.options.memory_available_min_pct,
            inbox_alert_after_s=None if config.inbox is None else config.inbox.alert_after_s)
        self.clock, self.tick_s, self.retry_base_s = clock, tick_s, retry_base_s
        self._senders = dict(senders) if senders is not None else None
        self.state = detect.State()
        self.outbox: list[outbox.Entry] = []
        self.changed = asyncio.Event()
        self.wakeups = {label: asyncio.Event() for label in self.targets}
        self.delivered = dict.fromkeys(self.targets, 0)  # since the daemon started
        self.quiet = QuietLogger(log)
        self._save_lock = asyncio.Lock()

    async def run(self) -> None:
        """Until cancelled; an unexpected error is logged and the notifier starts again."""
        pause = RESTART_S
        while True:
            try:
                await self.serve()
            except Exception:  # a bug must not end the api daemon (failover goes on)
                log.exception("notifier failed; starting it again in %.0f s", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESTART_MAX_S)

    async def serve(self) -> None:
        self.state, found = await asyncio.to_thread(outbox.load, self.config.private_dir)
        self.outbox = [e for e in found if e.target in self.targets]
        if len(self.outbox) < len(found):
            log.info("notifier: %d message(s) for targets no longer configured dropped",
                     len(found) - len(self.outbox))
        if self.outbox:
            log.info("notifier: %d message(s) from before the restart still to deliver",
                     len(self.outbox))
        observer = _watch(self.config.public_dir, asyncio.get_running_loop(), self.changed.set)
        try:
            async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
                secrets = {} if self._senders is not None \
                    else (await asyncio.to_thread(self.config.secrets)).notify
                senders = self._senders or {label: make_sender(t, secrets.get(label), session)
                                            for label, t in self.targets.items()}
                for label, sender in senders.items():
                    group.create_task(self._deliver(label, sender), name=f"notify-{label}")
                group.create_task(self._detect(), name="notify-detect")
        finally:
            observer.stop()
            await asyncio.to_thread(observer.join)

    async def evaluate(self) -> list[detect.Event]:
        """Read the public files once, step the detection, queue what it gives."""
        now = self.clock()
        docs = await asyncio.to_thread(read_docs, self.config.public_dir, now)
        observation = detect.observe(docs, self.limits, now, self.state.host_state)
        state, events = detect.step(self.state, observation, now, self.options.debounce_s)
        for event in events:
            log.info("notify: %s (%s)", event.event, event.message)
            for label, target in self.targets.items():
                if event.event in target.events:
                    self._queue(outbox.Entry(label, event.to_json(), created=now))
        if state != self.state or events:
            self.state = state
            await self._save()
        return events

    async def _detect(self) -> None:
        while True:
            await self.evaluate()
            try:
                async with asyncio.timeout(self.tick_s):
                    await self.changed.wait()
                await asyncio.sleep(SETTLE_S)
            except TimeoutError:
                pass
            self.changed.clear()

    async def _deliver(self, label: str, sender: Sender) -> None:
        """One target's messages, oldest first; a failing head waits its backoff."""
        wakeup = self.wakeups[label]
        while True:
            wakeup.clear()
            entry = next((e for e in self.outbox if e.target == label), None)
            now = self.clock()
            if entry is None:
                await wakeup.wait()
                continue
            if now - entry.created > self.options.max_age_s:
                log.error("notify %s: dropping %s after %d attempts over %.0f s (last: %s)",
                          label, entry.event.get("id"), entry.attempts, now - entry.created,
                          entry.last_error)
                await self._remove(entry)
                continue
            if entry.next_at > now:
                try:
                    async with asyncio.timeout(entry.next_at - now):
                        await wakeup.wait()
                except TimeoutError:
                    pass
                continue
            try:
                await sender.send(entry.event)
            except DeliveryError as exc:
                self._failed(label, entry, str(exc))
            except Exception as exc:  # a bug in a sender: log it whole, retry like a failure
                log.exception("notify %s: unexpected error", label)
                self._failed(label, entry, repr(exc))
            else:
                self.delivered[label] += 1
                self.quiet.success(label, "notify %s: delivering again", label)
                log.info("notify %s: delivered %s", label, entry.event.get("id"))
                await self._remove(entry)
                continue
            await self._save()

    def figures(self) -> dict[str, dict[str, int]]:
        """Per target: messages waiting, delivered since start, failing now (for /metrics)."""
        out = {}
        for label in self.targets:
            waiting = [e for e in self.outbox if e.target == label]
            out[label] = {"waiting": len(waiting), "delivered": self.delivered[label],
                          "failing": int(bool(waiting) and waiting[0].attempts > 0)}
        return out

    def _queue(self, entry: outbox.Entry) -> None:
        waiting = [e for e in self.outbox if e.target == entry.target]
        if len(waiting) >= MAX_WAITING:
            log.error("notify %s: %d messages waiting; dropping the oldest (%s)", entry.target,
                      len(waiting), waiting[0].event.get("id"))
            self.outbox.remove(waiting[0])
        self.outbox.append(entry)
        self.wakeups[entry.target].set()

    def _failed(self, label: str, entry: outbox.Entry, error: str) -> None:
        entry.attempts += 1
        delay = min(self.retry_base_s * 2 ** (entry.attempts - 1), self.options.retry_max_s)
        entry.next_at = self.clock() + delay
        entry.last_error = error
        self.quiet.failure(label, "notify %s: %s; retrying in %.0f s (and on, at most every "
                                  "%.0f s)", label, error, delay, self.options.retry_max_s)

    async def _remove(self, entry: outbox.Entry) -> None:
        self.outbox = [e for e in self.outbox if e is not entry]
        await self._save()

    async def _save(self) -> None:
        document = outbox.document(self.state, self.outbox)  # a snapshot, taken in the loop
        async with self._save_lock:
            try:
                await asyncio.to_thread(outbox.write, self.config.private_dir, document)
            except OSError as exc:  # a full card: keep going from memory
                self.quiet.failure("save", "cannot write the notifier's state: %s",
                                   exc.strerror or exc)
            else:
                self.quiet.success("save", "the notifier's state is written again")


def read_docs(public: Path, now: float) -> detect.Docs:
    """The public documents the detection reads; stale or unusable ones as None."""
    found: dict[str, Any] = {}
    for kind, field in _FILES.items():
        doc: Document | None = documents.read_or_none(public / documents.FILES[kind], kind)
        found[field] = None if doc is None or doc.stale(now) else doc
    nodes = nodesfile.read(public / nodesfile.FILE)
    found["nodes"] = None if nodes is None or nodes.stale(now) else nodes.raw
    return detect.Docs(**found)


def _watch(directory: Path, loop: asyncio.AbstractEventLoop, notify: Callable[[], None]) -> Any:
    """A watchdog observer calling ``notify`` (in the loop) when a public file is replaced."""
    kinds = {"created", "modified", "moved", "closed"}

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in kinds:
                target = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
                if target.endswith(".json"):
                    loop.call_soon_threadsafe(notify)

    directory.mkdir(parents=True, exist_ok=True)
    observer = Observer()
    observer.daemon = True
    observer.schedule(Handler(), str(directory), recursive=False)
    observer.start()
    return observer
