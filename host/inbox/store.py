"""Blocking file work of the receiver (run in a thread): temp file, fsync, hash, place.

Every name is opened relative to a directory descriptor with ``O_NOFOLLOW``, so a symlink
or a ``..`` planted in the inbox can never lead a write outside it. A file reaches its
final name only whole: written to ``TEMP_DIR``, fsynced, hash checked, then hard-linked
under the first free name (``link`` never replaces a file) and the directory fsynced.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

from host.inbox.names import MAX_NUMBERED, TEMP_DIR, PathRejected, numbered

# Large enough that hashing and writing a 1 GiB file costs few system calls.
HASH_CHUNK = 1024 * 1024
# While a large file arrives, its pages go to the disk in windows this big: writeback of
# each window starts as soon as it is written (overlapping the network, so the fsync at
# the end has little left) and at most two windows are dirty at once (see ``_writeback``).
WRITEBACK_WINDOW_BYTES = 16 * 1024 * 1024
# renameat2(2): fail with EEXIST instead of replacing (linux/fs.h).
_RENAME_NOREPLACE = 1
# sync_file_range(2) flags (linux/fs.h).
_SFR_WAIT_BEFORE, _SFR_WRITE, _SFR_WAIT_AFTER = 1, 2, 4
# File systems without hard links (FAT, exFAT) answer link() with one of these.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Guards the check-then-rename fallback; link() itself needs no lock.
_RENAME_LOCK = threading.Lock()


class ContentMismatch(Exception):
    """The bytes received do not hash to the announced X-Content-SHA256."""


class Folders:
    """The inbox and its temp folder, opened once (and shared by a batch's uploads)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            root.mkdir(parents=True, exist_ok=True)
            self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                self.tmp_fd = os.open(TEMP_DIR, _DIR_FLAGS, dir_fd=self.root_fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(TEMP_DIR, 0o700, dir_fd=self.root_fd)
                self.tmp_fd = os.open(TEMP_DIR, _DIR_FLAGS, dir_fd=self.root_fd)
        except BaseException:
            os.close(self.root_fd)
            raise

        self._folders: dict[tuple[str, ...], int] = {}

    def folder(self, names: tuple[str, ...]) -> int:
        """The folder ``names`` below the inbox, created if needed, its fd kept till close."""
        fd = self._folders.get(names)
        if fd is None:
            fd, created = _open_dirs(self.root_fd, names)
            for parent in created:  # the caller fsyncs every folder on the way
                os.close(parent)
            self._folders[names] = fd
        return fd

    def close(self) -> None:
        for fd in self._folders.values():
            os.close(fd)
        self._folders.clear()
        if self.root_fd >= 0:
            os.close(self.tmp_fd)
            os.close(self.root_fd)
        self.root_fd = self.tmp_fd = -1


class Upload:
    """One file being received: written to a temp file and hashed as it goes."""

    def __init__(self, root: Path | Folders) -> None:
        self._own = isinstance(root, Path)
        self.folders = Folders(root) if isinstance(root, Path) else root
        self.root_fd, self.tmp_fd = self.folders.root_fd, self.folders.tmp_fd
        self.fd = -1
        self.tmp_name = ""
        try:
            name = f"{os.urandom(8).hex()}.part"
            self.fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o666, dir_fd=self.tmp_fd)
            self.tmp_name = name
        except BaseException:
            self.discard()
            raise
        self.hasher = hashlib.sha256()
        self.size = 0
        # Bytes whose writeback was started / waited for (see _writeback).
        self.started = self.waited = 0

    def write(self, pieces: list[bytes], hash_too: bool = True) -> None:
        """Append ``pieces`` (one writev, no joining copy); hash them unless the caller
        does that on another thread (``hash``), in the same order."""
        total = sum(map(len, pieces))
        written = os.writev(self.fd, pieces)
        if written < total:  # rare for a regular file (a signal, a full disk on the way)
            rest = memoryview(b"".join(pieces))[written:]
            while rest:
                rest = rest[os.write(self.fd, rest):]
        if hash_too:
            self.hash(pieces)
        self.size += total
        if self.size - self.started >= WRITEBACK_WINDOW_BYTES:
            self._writeback()

    def hash(self, pieces: list[bytes]) -> None:
        """Hash ``pieces``, in order (possibly on another thread than ``write``)."""
        for piece in pieces:
            self.hasher.update(piece)

    def _writeback(self) -> None:
        """Start writing the newest window to the disk; wait for the one before it.

        Without this the kernel keeps a large upload dirty in memory (up to
        dirty_background_ratio) and the final fsync writes all of it while the network
        waits. Only an optimisation: ``finish`` fsyncs whatever this did or did not do.
        """
        sync_file_range = _sync_file_range()
        if sync_file_range is None:
            return
        sync_file_range(self.fd, self.started, self.size - self.started, _SFR_WRITE)
        if self.started > self.waited:
            sync_file_range(self.fd, self.waited, self.started - self.waited,
                            _SFR_WAIT_BEFORE | _SFR_WRITE | _SFR_WAIT_AFTER)
        self.waited, self.started = self.started, self.size

    def finish(self, sha256: str) -> None:
        """Make the data durable; ContentMismatch when it is not what was announced."""
        os.fsync(self.fd)
        self.check(sha256)

    def check(self, sha256: str) -> None:
        if self.hasher.hexdigest() != sha256:
            raise ContentMismatch(f"received {self.size} bytes with SHA-256 "
                                  f"{self.hasher.hexdigest()}, not the announced {sha256}")

    def place(self, parts: tuple[str, ...], sha256: str, sync: bool = True) -> tuple[str, bool]:
        """Give the file its final name: ``(stored_as, duplicate)``.

        An identical file already under the name (or a numbered one) is a duplicate (a
        re-send after a crash); a different one keeps its name and this file gets the
        next free "name (n).ext". ``sync=False``: the caller fsyncs the folders after
        placing several files (``sync_folders``).
        """
        if sync:
            dir_fd, created = _open_dirs(self.root_fd, parts[:-1])
        else:
            dir_fd, created = self.folders.folder(parts[:-1]), []
        try:
            stored, duplicate = self._link(dir_fd, parts[-1], sha256)
            with contextlib.suppress(FileNotFoundError):  # gone already after a rename
                os.unlink(self.tmp_name, dir_fd=self.tmp_fd)
            self.tmp_name = ""
            if sync:
                os.fsync(dir_fd)
                for parent in created:
                    os.fsync(parent)
        finally:
            if sync:
                os.close(dir_fd)
            for parent in created:
                os.close(parent)
        return "/".join((*parts[:-1], stored)), duplicate

    def discard(self) -> None:
        """Close the file; remove the temp file unless it was placed."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp_name and self.tmp_fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_name, dir_fd=self.tmp_fd)
            self.tmp_name = ""
        if self._own:
            self.folders.close()
        self.tmp_fd = self.root_fd = -1

    def _link(self, dir_fd: int, name: str, sha256: str) -> tuple[str, bool]:
        for n in range(1, MAX_NUMBERED + 1):
            candidate = numbered(name, n)
            try:
                _link_no_replace(self.tmp_fd, self.tmp_name, dir_fd, candidate)
            except FileExistsError:
                if _same_content(dir_fd, candidate, self.size, sha256):
                    return candidate, True
                continue
            return candidate, False
        raise PathRejected("name_taken", f"{MAX_NUMBERED} files named like {name!r} already "
                           "exist in the inbox", 409)


def clear_temp(root: Path) -> int:
    """Remove uploads a crash left behind (at start, before serving); how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(root / TEMP_DIR):
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                os.unlink(entry.path)
                removed += 1
    return removed


def syncfs(fd: int) -> bool:
    """Flush the whole file system ``fd`` is on (Linux syncfs); False where unavailable.

    For a batch, one syncfs costs what one fsync does, where an fsync per file costs a
    journal commit each. The price: it also waits for other dirty data on that file system.
    """
    libc = _libc()
    return libc is not None and libc.syncfs(fd) == 0


@functools.cache
def _sync_file_range() -> Any:
    """libc's sync_file_range (Linux), typed for 64-bit offsets; None elsewhere."""
    function = getattr(_libc(), "sync_file_range", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
        function.restype = ctypes.c_int
    return function


def rename_no_replace(src_fd: int, src: str, dst_fd: int, dst: str) -> bool:
    """renameat2(RENAME_NOREPLACE): True when moved, FileExistsError when ``dst`` exists,
    False where the kernel or the file system cannot do it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, "exists", dst)
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), dst)


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2 (glibc 2.28+), typed; None elsewhere."""
    function = getattr(_libc(), "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                             ctypes.c_uint]
        function.restype = ctypes.c_int
    return function


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def sync_folders(root: Path, placed: list[tuple[str, ...]]) -> None:
    """fsync every folder on the way to each placed file (root included), each once."""
    folders = {parts[:i] for parts in placed for i in range(len(parts))}
    for folder in sorted(folders, key=len, reverse=True):
        fd = os.open(root.joinpath(*folder), _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def free_bytes(root: Path) -> int:
    """Bytes an unprivileged writer may still use on the inbox's file system."""
    try:
        st = os.statvfs(root)
    except FileNotFoundError:
        root.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def _open_dirs(root_fd: int, names: tuple[str, ...]) -> tuple[int, list[int]]:
    """Open (creating as needed) the folder ``names`` below root without following links.

    Returns its descriptor and the descriptors of folders whose entries changed (to fsync).
    """
    fd = os.dup(root_fd)
    created: list[int] = []
    try:
        for name in names:
            made = False
            try:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):  # another upload was quicker
                        os.mkdir(name, 0o777, dir_fd=fd)
                        made = True
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise PathRejected("not_a_folder", f"{name!r} in the inbox is a file or a "
                                       "link, not a folder", 409) from None
                raise
            if made:
                created.append(fd)
            else:
                os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        for parent in created:
            os.close(parent)
        raise
    return fd, created


def _link_no_replace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    try:
        os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # No hard links (FAT, exFAT): a rename that refuses to replace, where the kernel
        # has one; a check-then-rename only as the last resort (a file a user creates in
        # between would be replaced, and the lock covers this process only).
        if rename_no_replace(src_fd, src, dst_fd, dst):
            return
        with _RENAME_LOCK:
            try:
                os.lstat(dst, dir_fd=dst_fd)
            except FileNotFoundError:
                os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                return
            raise FileExistsError(errno.EEXIST, "exists", dst) from None


def _same_content(dir_fd: int, name: str, size: int, sha256: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False  # a link or something unreadable: not ours
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        hasher = hashlib.sha256()
        while chunk := os.read(fd, HASH_CHUNK):
            hasher.update(chunk)
        return hasher.hexdigest() == sha256
    finally:
        os.close(fd)
