"""Send one inbox file to the host and delete it only once the host has it, verified.

``PUT /api/v1/inbox/{percent-encoded path}`` with ``X-Content-SHA256``: the body is
streamed, so the signature signs ``sha256(b"")`` as the body hash and covers the
``X-Content-SHA256`` header (``HandshakeClient.stream``); the host checks the signature
before reading and the bytes against the header after writing them, fsynced.

The file is opened once, through real folders only (``safeopen``: a folder swapped for a
link to outside the inbox is never followed), and only if it is the very inode that
settled (``expected``) with one name (a hard link may be a file from outside). Its hash
is taken from that descriptor (or was taken ahead for that same size, mtime and inode),
the body streamed from it, and before deleting, the name in its verified folder must
still be the same inode with the same size and mtime. A file that changed on the
way is never deleted (the host refuses a body that does not match the announced hash, and
a later version settles and goes again). Small files usually go many to a request
(``batch``); they are read through ``open_file`` and deleted by ``delete_if_unchanged``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from handshake import inboxwire
from handshake.client import HandshakeClient
from handshake.util.timeutil import iso
from pi.inbox import safeopen
from pi.inbox.outcome import OK, FileChanged, Kind, Outcome, Refused, Result, StillOpen, classify
from pi.inbox.tracker import Identity

# Read and send in pieces this big: few thread hops, a few MB of memory at most.
CHUNK_BYTES = 1024 * 1024
# No piece accepted by the host for this long: it fell asleep or the network is gone
# (TCP alone would wait for minutes).
STALL_S = 30.0
# The host fsyncs the whole file before it answers; a slow disk takes a while for a large one.
ANSWER_S = 120.0
# A sent file is renamed to this hidden prefix + a token + its name just before it goes.
SENT_PREFIX = ".edgepair-sent-"
# Linux's NAME_MAX: the longest file name, in bytes.
NAME_MAX_BYTES = 255


@dataclass(slots=True)
class Progress:
    """One file in flight, as inbox.json shows it."""

    path: str
    bytes: int
    started_at: float
    sent_bytes: int = 0
    shrank: bool = False
    # The file as it settled: only that inode, unchanged, is sent.
    expected: Identity | None = None

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "bytes": self.bytes, "sent_bytes": self.sent_bytes,
                "started_at": iso(self.started_at)}


@dataclass(frozen=True, slots=True)
class Sent:
    """The host has the file: where it stored it, and whether the Pi's copy is gone."""

    stored_as: str
    duplicate: bool
    deleted: bool


def url_path(rel: str) -> str:
    """The request path for ``rel`` (raw bytes percent-encoded, ``/`` kept)."""
    return inboxwire.FILE_PATH_PREFIX + inboxwire.encode_path(rel)


async def send(client: HandshakeClient, root: Path, rel: str, progress: Progress, *,
               known: tuple[Identity, str] | None = None, need_proof: bool = False,
               stall_s: float = STALL_S, answer_s: float = ANSWER_S) -> Sent | Outcome:
    """Send ``root/rel``: Sent once the host confirmed our hash, else what its answer means.

    Raises FileChanged, RequestError, PeerUnavailable, OSError (``outcome.classify`` sorts them).
    ``known``: its SHA-256 hashed ahead, used when the file is still that identity.
    ``need_proof``: seen written but not closed; only a lease may clear it (StillOpen).
    """
    fd, before, small = await asyncio.to_thread(open_file, root, rel, True, need_proof,
                                                progress.expected)
    reads: list[asyncio.Future[bytes]] = []  # the body's read ahead, if any
    try:
        progress.bytes = before.size
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(stall_s) as deadline:
            body: bytes | AsyncIterator[bytes]
            if small is not None:
                body, sha256 = small
                deadline.reschedule(loop.time() + answer_s)
                progress.sent_bytes = before.size
            else:
                sha256 = await _sha256(fd, before, known)
                body = _chunks(fd, before, progress, deadline, reads, stall_s, answer_s)
            try:
                answer = await client.stream("PUT", url_path(rel), body, content_sha256=sha256,
                                             content_length=before.size, read_timeout_s=answer_s)
            except Exception as exc:
                if progress.shrank or classify(Result(rel, error=exc)).kind is Kind.CHANGED:
                    raise FileChanged(f"{rel}: changed while being sent") from exc
                raise
        verdict = classify(Result(rel, sha256, OK, answer))
        if not verdict.deletes:
            return verdict
        deleted = await asyncio.to_thread(delete_if_unchanged, root, rel, before)
        return Sent(verdict.stored_as, verdict.duplicate, deleted)
    finally:
        await _settle(reads)
        os.close(fd)


async def _sha256(fd: int, before: Identity, known: tuple[Identity, str] | None) -> str:
    """The hash taken ahead if it was of this very file, else a fresh one."""
    if known is not None and known[0] == before:
        return known[1]
    return await asyncio.to_thread(_hash, fd, before.size)


async def _settle(reads: list[asyncio.Future[bytes]]) -> None:
    """Wait for the last read ahead: no worker thread may read the descriptor once closed."""
    if reads and not reads[-1].done():
        await asyncio.wait(reads)
    for read in reads:
        if not read.cancelled():
            read.exception()  # retrieved: what failed was raised, or no longer matters


def open_file(root: Path, rel: str, small: bool = True, need_proof: bool = False,
              expected: Identity | None = None,
              ) -> tuple[int, Identity, tuple[bytes, str] | None]:
    """The descriptor, what it is, and for a small file already its bytes and hash.

    ``expected``: the file as it settled; another inode or content is FileChanged.
    """
    # O_NONBLOCK: a FIFO put in the share must not hang the open.
    fd = safeopen.open_file(root, rel, os.O_RDONLY | os.O_NONBLOCK)
    path = root / rel
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileChanged(f"{path}: no longer a regular file")
        if expected is not None and Identity.of(st) != expected:
            raise FileChanged(f"{path}: not the file that settled")
        if st.st_nlink > 1:
            raise Refused("hard_link", f"{rel}: a hard link ({st.st_nlink} names): it may be "
                          "a file from outside the inbox, so it is not sent")
        writer = writer_present(fd)
        if writer or (writer is None and need_proof):
            raise StillOpen(f"{path}: still open for writing" if writer else
                            f"{path}: not seen closed yet (and no lease to ask)")
        if st.st_size > inboxwire.SMALL_FILE_BYTES or not small:
            return fd, Identity.of(st), None
        data = os.pread(fd, st.st_size, 0)
        if len(data) != st.st_size:
            raise FileChanged(f"{path}: shrank while being read")
        return fd, Identity.of(st), (data, hashlib.sha256(data).hexdigest())
    except BaseException:
        os.close(fd)
        raise


def digest(root: Path, rel: str, identity: Identity, cancel: threading.Event) -> str | None:
    """SHA-256 of ``root/rel`` if it is ``identity`` before and after; None if it changed."""
    fd, before, _ = open_file(root, rel, small=False)
    try:
        if before != identity:
            return None
        sha256 = _hash(fd, before.size, cancel)
        return sha256 if Identity.of(os.fstat(fd)) == identity else None
    finally:
        os.close(fd)


def _hash(fd: int, size: int, cancel: threading.Event | None = None) -> str:
    hasher = hashlib.sha256()
    offset = 0
    while offset < size:
        if cancel is not None and cancel.is_set():
            raise FileChanged("hashing cancelled")
        chunk = os.pread(fd, min(CHUNK_BYTES, size - offset), offset)
        if not chunk:
            raise FileChanged("shrank while being hashed")
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest()


async def _chunks(fd: int, before: Identity, progress: Progress, deadline: asyncio.Timeout,
                  reads: list[asyncio.Future[bytes]], stall_s: float,
                  answer_s: float) -> AsyncIterator[bytes]:
    """The body, read ahead by one piece; each piece taken by the host renews the deadline.

    Each read ahead is appended to ``reads``, so the caller can wait for the last one
    before closing ``fd`` however the request ends. A file that changed while it was
    streamed (appended to by a writer that opened it again) ends the body one piece
    short: the host stores nothing, instead of a prefix under the file's final name.
    """
    loop = asyncio.get_running_loop()
    size = before.size
    offset = 0
    reads.append(asyncio.ensure_future(asyncio.to_thread(os.pread, fd, CHUNK_BYTES, 0)))
    while offset < size:
        chunk = await reads[-1]
        if not chunk:
            progress.shrank = True
            raise FileChanged("shrank while being sent")
        offset += len(chunk)
        if offset < size:
            reads[-1:] = [asyncio.ensure_future(asyncio.to_thread(
                os.pread, fd, min(CHUNK_BYTES, size - offset), offset))]
        elif Identity.of(os.fstat(fd)) != before:
            progress.shrank = True  # "changed": send() turns what follows into FileChanged
            raise FileChanged("changed while being sent")
        yield chunk
        progress.sent_bytes = offset
        deadline.reschedule(loop.time() + stall_s)
    deadline.reschedule(loop.time() + answer_s)


def writer_present(fd: int) -> bool | None:
    """Whether any process has the file open for writing; None when Linux won't say.

    A read lease is refused (EAGAIN) while a writer has the file open: the one sure sign
    that survives lost inotify events and restarts. Leases need the file's owner (the
    Samba share forces user edgepair) or CAP_LEASE; otherwise EACCES and events decide.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def delete_if_unchanged(root: Path, rel: str, before: Identity) -> bool:
    """Remove ``root/rel`` if it is still the file that was sent; False when it changed.

    A check and an unlink by name are two look-ups: a new version renamed over the name
    between them (how Office saves) would be deleted unsent. So the file is first renamed
    to a hidden name (the tracker ignores ``.*``), checked there, and only then unlinked;
    one that turns out to be another file is put back. All of it happens in the folder
    reached by ``safeopen`` (never through a link), relative to its descriptor.
    """
    try:
        with safeopen.parent(root, rel) as (folder, name):
            return _delete_in(folder, name, before)
    except (FileNotFoundError, FileChanged):
        return False


def _delete_in(folder: int, name: str, before: Identity) -> bool:
    try:
        now = Identity.of(os.stat(name, dir_fd=folder, follow_symlinks=False))
    except FileNotFoundError:
        return False
    if now != before:
        return False
    aside = f"{SENT_PREFIX}{secrets.token_hex(4)}-{name}"
    if len(os.fsencode(aside)) > NAME_MAX_BYTES:
        # No room for the prefix in the name (a name near the 255-byte limit): the aside
        # name must keep the whole original for a restore, so this one is removed by
        # name, with the narrow check-then-unlink window that the rename closes for others.
        os.unlink(name, dir_fd=folder)
        return True
    try:
        os.rename(name, aside, src_dir_fd=folder, dst_dir_fd=folder)
    except FileNotFoundError:
        return False
    if before.same_file(os.stat(aside, dir_fd=folder, follow_symlinks=False)):
        os.unlink(aside, dir_fd=folder)
        return True
    put_back(folder, aside)
    return False


def put_back(folder: int, aside: str) -> str:
    """Give a file renamed aside by ``delete_if_unchanged`` (in the folder ``folder``) its
    name again, never over another file: "name (edgepair 2).ext" when the name is taken."""
    name = aside[len(SENT_PREFIX):].partition("-")[2]
    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    for n in range(1, 1000):
        candidate = name if n == 1 else f"{stem} (edgepair {n}){dot}{ext}"
        try:
            os.link(aside, candidate, src_dir_fd=folder, dst_dir_fd=folder,
                    follow_symlinks=False)
        except FileExistsError:
            continue
        os.unlink(aside, dir_fd=folder)
        return candidate
    return aside  # a thousand names taken: it stays, hidden but not lost


def restore_aside(root: Path) -> list[Path]:
    """At start: files a crash left renamed aside go back under their names (and are sent
    again; the host recognizes what it already has)."""
    restored = []
    for rel_dir, folder, entries in safeopen.walk(root):
        for entry in entries:
            if entry.name.startswith(SENT_PREFIX) and not entry.is_dir(follow_symlinks=False):
                restored.append(root / rel_dir / put_back(folder, entry.name))
    return restored
