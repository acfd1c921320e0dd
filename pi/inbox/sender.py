"""Getting ready files out: sends in flight, what each outcome means, hashing ahead.

The daemon's loop calls ``start`` while the host is online; each send runs as a task and
reports back through the tracker (``release``/``gone``) and the report (errors, refusals).
Large files stream one to a request (``[inbox] parallel`` at once); small ones go many to
a request (``batch``, ``[inbox] parallel_small`` requests at once). While files wait (the
host asleep, or every slot busy), the largest cost of sending a large file, the SHA-256
pass over it, is done ahead by one background hash at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from handshake.client import HandshakeClient
from handshake.errors import PeerUnavailable, RequestError
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from pi.inbox import batch, status, upload
from pi.inbox.outcome import FileChanged, Kind, Outcome, Result, classify
from pi.inbox.tracker import Identity, Tracker

log = logging.getLogger(__name__)

# Host unreachable or failing: 1, 2, 4 … 60 s between attempts.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
# The host's disk is full (507) or refuses our key (401): an admin has to act first.
HOST_PROBLEM_RETRY_S = 300.0
# The host refused this one file (bad name, too large): try again in case its config changed.
REJECTED_RETRY_S = 3600.0
# This Pi could not read the file (permissions): try again now and then.
FILE_ERROR_RETRY_S = 60.0


class Sender:
    """Requests in flight (bounded per size class), backoff, flush statistics, hashing ahead."""

    def __init__(self, root: Path, tracker: Tracker, report: status.Report, parallel: int,
                 parallel_small: int, *, on_done: Callable[[], None],
                 on_deleted: Callable[[str], None], clock: Callable[[], float],
                 wall: Callable[[], float]) -> None:
        self.root, self.tracker, self.report = root, tracker, report
        # Requests at once: large files stream; small ones (≤ SMALL_FILE_BYTES) go in batches.
        self.slots = {False: parallel, True: parallel_small}
        self.on_done, self.on_deleted = on_done, on_deleted
        self.clock, self.wall = clock, wall
        self.tasks: dict[str, tuple[asyncio.Task[None], upload.Progress]] = {}
        self.batches: set[asyncio.Task[None]] = set()
        self.singles: dict[bool, set[asyncio.Task[None]]] = {True: set(), False: set()}
        self.batching = True  # until a host without POST /api/v1/inbox says 404/405
        self.retry_at = 0.0
        self.failures = 0
        self.flush: status.Flush | None = None
        self.drained = True  # the last look for ready files found none
        self.digests: dict[str, tuple[Identity, str]] = {}
        self._hashing: tuple[asyncio.Task[None], threading.Event] | None = None
        self.quiet = QuietLogger(log)
        self.client: HandshakeClient | None = None

    def host_changed(self) -> None:
        """A new host state: try at once, with a fresh backoff."""
        self.retry_at = 0.0
        self.failures = 0

    def start(self, now: float) -> None:
        """Start sends while slots are free and files are ready."""
        self.drained = True
        for small, slots in self.slots.items():
            while now >= self.retry_at and self.in_flight(small) < slots:
                rels = self._take(now, small)
                if not rels:
                    break
                if self.flush is None:
                    self.flush = status.Flush(self.wall(), now)
                progress = [self._progress(rel) for rel in rels]
                if small and self.batching:
                    task = asyncio.create_task(self._send_batch(progress), name="inbox-batch")
                    self.batches.add(task)
                else:
                    task = asyncio.create_task(self._send(progress[0], small),
                                               name=f"inbox-send:{rels[0]}")
                    self.singles[small].add(task)
                for p in progress:
                    self.tasks[p.path] = (task, p)
            else:
                self.drained = False  # slots full (or backing off): more may be ready

    def _progress(self, rel: str) -> upload.Progress:
        """A send of ``rel`` as it settled: only that inode, unchanged, may go."""
        identity = self.tracker.files[rel].identity
        return upload.Progress(rel, identity.size, self.wall(), expected=identity)

    def in_flight(self, small: bool) -> int:
        """Sends in flight: single files of that size class, and batches (small)."""
        return len(self.singles[small]) + (len(self.batches) if small else 0)

    def _take(self, now: float, small: bool) -> list[str]:
        """One large file, or as many small ones as make a batch."""
        rels: list[str] = []
        size = 0
        limit = batch.BATCH_FILES if small and self.batching else 1
        while len(rels) < limit and size < batch.BATCH_BYTES:
            rel = self.tracker.take(now, small)
            if rel is None:
                break
            rels.append(rel)
            size += self.tracker.files[rel].identity.size
        return rels

    async def stop(self) -> None:
        """Cancel every send and the hash ahead (their files stay and go later)."""
        tasks = [task for task, _ in self.tasks.values()]
        if self._hashing is not None:
            task, cancel = self._hashing
            cancel.set()  # the worker thread stops at its next chunk
            tasks.append(task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def end_flush(self, now: float, online: bool) -> None:
        """Close the flush statistics once nothing is in flight and nothing is ready."""
        flush = self.flush
        if flush is None or self.tasks:
            return
        if online and now >= self.retry_at and not self.drained:
            return
        if flush.files:
            self.report.last_flush = status.flush_json(flush, self.wall(), now)
            log.info("flushed %d file(s), %d bytes to the host in %.1f s", flush.files,
                     flush.bytes, now - flush.started_mono)
        self.flush = None

    def hash_ahead(self, rel: str | None) -> None:
        """Hash ``rel`` (a large ready file) in the background, unless a hash is running."""
        if rel is None or self._hashing is not None:
            return
        entry = self.tracker.files.get(rel)
        if entry is None:
            return
        cancel = threading.Event()
        task = asyncio.create_task(self._hash(rel, entry.identity, cancel), name="inbox-hash")
        self._hashing = (task, cancel)

    def known(self, rel: str, identity: Identity) -> bool:
        digest = self.digests.get(rel)
        return digest is not None and digest[0] == identity

    # -- tasks ---------------------------------------------------------------------------

    async def _hash(self, rel: str, identity: Identity, cancel: threading.Event) -> None:
        try:
            digest = await asyncio.to_thread(upload.digest, self.root, rel, identity, cancel)
            if digest is not None:
                self.digests[rel] = (identity, digest)
        except (OSError, FileChanged) as exc:
            log.debug("%s: not hashed ahead: %s", rel, exc)
        finally:
            self._hashing = None
            self.on_done()

    async def _send(self, progress: upload.Progress, small: bool) -> None:
        assert self.client is not None
        rel = progress.path
        entry = self.tracker.files.get(rel)
        try:
            if entry is None:  # its folder went while the send waited to start
                return
            sent = await upload.send(self.client, self.root, rel, progress,
                                     known=self.digests.get(rel),
                                     need_proof=self.tracker.needs_proof(entry, self.clock()))
        except asyncio.CancelledError:
            self.tracker.release(rel, self.clock())
            raise
        except Exception as exc:  # every outcome releases the file (see _apply)
            self._failed([rel], exc)
        else:
            if isinstance(sent, upload.Sent):
                self._sent(rel, progress, sent)
            else:
                self._apply([rel], sent)
        finally:
            self.tasks.pop(rel, None)
            task = asyncio.current_task()
            if task is not None:
                self.singles[small].discard(task)
            self.on_done()

    async def _send_batch(self, progress: list[upload.Progress]) -> None:
        """Small files in one request; each file's outcome handled as if sent alone."""
        assert self.client is not None
        rels = [p.path for p in progress]
        task = asyncio.current_task()
        try:
            reads = await self._read(progress)
            if reads:
                await self._post(reads, {p.path: p for p in progress})
        except asyncio.CancelledError:
            for rel in rels:
                self.tracker.release(rel, self.clock())
            raise
        except Exception as exc:  # a bug must not leave files marked busy forever
            for rel in rels:
                self._failed([rel], exc)
        finally:
            for rel in rels:
                self.tasks.pop(rel, None)
            if task is not None:
                self.batches.discard(task)
            self.on_done()

    async def _read(self, progress: list[upload.Progress]) -> list[batch.Read]:
        """The files read in one worker-thread call; each one that cannot go is handled."""
        now = self.clock()
        # A file whose folder went while the batch waited to start is no longer tracked.
        entries = [(p, e) for p in progress if (e := self.tracker.files.get(p.path)) is not None]
        files = [(p.path, self.tracker.needs_proof(e, now)) for p, e in entries]
        reads: list[batch.Read] = []
        for (p, _), got in zip(entries, await asyncio.to_thread(batch.read, self.root, files),
                               strict=True):
            if not isinstance(got, batch.Read):
                self._failed([p.path], got)
            elif got.identity != p.expected:
                self._failed([p.path], FileChanged(f"{p.path}: not the file that settled"))
            else:
                reads.append(got)
        return reads

    async def _post(self, reads: list[batch.Read], progress: dict[str, upload.Progress]) -> None:
        assert self.client is not None
        try:
            results = await batch.send(self.client, reads)
        except (RequestError, PeerUnavailable, TimeoutError) as exc:
            self._apply([r.rel for r in reads], classify(Result(error=exc, batch=True)))
            return
        verdicts = [batch.outcome(r, result) for r, result in zip(reads, results, strict=True)]
        delivered = [r for r, v in zip(reads, verdicts, strict=True) if v.deletes]
        deleted = dict(zip([r.rel for r in delivered],
                           await asyncio.to_thread(batch.delete, self.root, delivered),
                           strict=True))
        temporary: list[str] = []
        for r, v in zip(reads, verdicts, strict=True):
            if v.deletes:
                progress[r.rel].sent_bytes = len(r.data)
                self._sent(r.rel, progress[r.rel],
                           upload.Sent(v.stored_as, v.duplicate, deleted[r.rel]))
            elif v.kind is Kind.TEMPORARY:
                temporary.append(r.rel)
            else:
                self._apply([r.rel], v)
        if temporary:  # one backoff step for all of them
            self._host_down(temporary, "the host could not store them now")

    # -- outcomes ------------------------------------------------------------------------

    def _failed(self, rels: list[str], exc: BaseException) -> None:
        """What was raised instead of an answer, for these files."""
        verdict = classify(Result(rels[0], error=exc))
        if verdict.kind is Kind.BUG:
            log.error("%s: unexpected error while sending", rels[0], exc_info=exc)
        self._apply(rels, verdict)

    def _sent(self, rel: str, progress: upload.Progress, sent: upload.Sent) -> None:
        now = self.clock()
        self.failures = 0
        self.quiet.success("host", "the host takes inbox files again")
        self.report.rejected.pop(rel, None)
        self.digests.pop(rel, None)
        self.report.delivered_files += 1
        self.report.delivered_bytes += progress.bytes
        if self.flush is not None:
            self.flush.files += 1
            self.flush.bytes += progress.bytes
        log.debug("%s: on the host as %s%s", rel, sent.stored_as,
                  " (already there)" if sent.duplicate else "")
        if sent.deleted:
            self.tracker.gone(rel)
            self.on_deleted(rel)
        else:  # changed after it was read: the new version settles and goes too
            self.tracker.release(rel, now)
            self.tracker.changed(rel, now)

    def _apply(self, rels: list[str], verdict: Outcome) -> None:
        """Carry out an outcome other than DELIVERED (which ``_sent`` does) for these files."""
        now = self.clock()
        match verdict.kind:
            case Kind.TEMPORARY:
                self._host_down(rels, verdict.reason)
            case Kind.NO_BATCHES:
                log.info("the host takes no batches (%s): small files go one by one",
                         verdict.reason)
                self.batching = False
                for rel in rels:
                    self.tracker.release(rel, now)
            case Kind.HOST_PROBLEM:
                for rel in rels:
                    self._host_problem(rel, verdict)
            case Kind.REJECTED:
                for rel in rels:
                    self._rejected(rel, verdict)
            case _:
                for rel in rels:
                    self._file_problem(rel, verdict)

    def _file_problem(self, rel: str, verdict: Outcome) -> None:
        """The file itself could not go (open, changed, gone, unreadable): not the host."""
        now = self.clock()
        if verdict.kind is Kind.STILL_OPEN:
            log.debug("%s; asking again in %.0f s", verdict.reason, self.tracker.settle_s)
            self.tracker.release(rel, now, self.tracker.settle_s)
        elif verdict.kind is Kind.CHANGED:
            log.info("%s; it goes once it has settled", verdict.reason)
            self.tracker.release(rel, now)
            self.tracker.changed(rel, now)
        elif verdict.kind is Kind.VANISHED:
            self.tracker.gone(rel)
        else:  # UNREADABLE, BUG: a file must not stay marked busy forever
            self._error(rel, verdict.reason)
            self.tracker.release(rel, now, FILE_ERROR_RETRY_S)

    def _host_problem(self, rel: str, verdict: Outcome) -> None:
        now = self.clock()
        self.tracker.release(rel, now)
        self.retry_at = now + HOST_PROBLEM_RETRY_S
        self.quiet.failure("host", "the host refuses inbox files: %s; next try in %.0f s",
                           verdict.reason, HOST_PROBLEM_RETRY_S)
        self._error(rel, verdict.reason)

    def _rejected(self, rel: str, verdict: Outcome) -> None:
        log.warning("%s: refused (%s); it stays on the Pi", rel, verdict.reason)
        self.tracker.release(rel, self.clock(), REJECTED_RETRY_S)
        self.report.rejected[rel] = {"status": verdict.status, "code": verdict.code,
                                     "message": verdict.reason, "at": iso(self.wall())}
        self._error(rel, verdict.reason)

    def _host_down(self, rels: list[str], message: str) -> None:
        """The host failed these files for no fault of theirs: all wait one backoff step."""
        now = self.clock()
        for rel in rels:
            self.tracker.release(rel, now)
        delay = min(BACKOFF_BASE_S * 2 ** self.failures, BACKOFF_MAX_S)
        self.failures += 1
        self.retry_at = max(self.retry_at, now + delay)
        self.quiet.failure("host", "cannot send to the host: %s; next try in %.0f s", message,
                           delay)
        self._error(rels[0], message)

    def _error(self, rel: str, message: str) -> None:
        self.report.last_error = {"at": iso(self.wall()), "message": message, "path": rel}


def parents(rel: str) -> list[str]:
    """``"a/b/c.txt"`` → ["a/b", "a"]: the folders a sent file may have emptied."""
    out = []
    folder = os.path.dirname(rel)
    while folder:
        out.append(folder)
        folder = os.path.dirname(folder)
    return out
