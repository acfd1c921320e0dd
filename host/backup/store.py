"""The Pi's backups on the host's disk: one temp file per upload, committed by rename.

A backup is written to ``.tmp-<random>`` in the backup folder, fsynced, compared with the
hash the Pi signed, renamed to ``edgepair-pi-<UTC>.tar.gz`` beside a ``.sha256`` file in
``sha256sum`` format, and the folder fsynced; only then are the oldest beyond ``keep``
removed. A kill -9 at any point leaves the earlier backups as they were and at most a
temp file, which the next start removes. Blocking: the receiver calls it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from pathlib import Path

from handshake.backupwire import NAME_RE, Stored, archive_name
from handshake.util.timeutil import iso

TEMP_PREFIX = ".tmp-"
HASH_SUFFIX = ".sha256"


class ContentMismatch(Exception):
    """The body's SHA-256 is not the one the Pi signed."""


class Upload:
    """One backup being received: a temp file and the running hash of what it holds."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.folder = folder
        self.path = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, pieces: list[bytes]) -> None:
        assert self._fd is not None
        for piece in pieces:
            view = memoryview(piece)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._hash.update(piece)
            self.size += len(piece)

    def commit(self, sha256: str, keep: int, now: float) -> tuple[Stored, list[str]]:
        """Check, fsync, place under a fresh name, fsync the folder, prune: (stored, removed)."""
        assert self._fd is not None
        got = self._hash.hexdigest()
        if got != sha256:
            raise ContentMismatch(f"the body's SHA-256 is {got}, the signed one {sha256}")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        n = 0
        while (self.folder / archive_name(now, n)).exists():
            n += 1
        name = archive_name(now, n)
        sidecar = self.folder / f"{name}{HASH_SUFFIX}"
        sidecar_tmp = self.folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{HASH_SUFFIX}"
        sidecar_tmp.write_text(f"{sha256}  {name}\n")
        with sidecar_tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.rename(sidecar_tmp, sidecar)  # the hash first: an archive never lacks its hash
        os.rename(self.path, self.folder / name)
        _fsync_dir(self.folder)
        stored = Stored(name=name, bytes=self.size, sha256=sha256, received_at=iso(now) or "")
        return stored, prune(self.folder, keep)

    def discard(self) -> None:
        """Close and remove the temp file (after commit: nothing to do)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def listing(folder: Path) -> list[Stored]:
    """The complete backups, oldest first (an archive without its hash file is not one)."""
    out = []
    for path in sorted(folder.glob("edgepair-pi-*.tar.gz")):
        if not NAME_RE.match(path.name):
            continue
        try:
            sha256 = (folder / f"{path.name}{HASH_SUFFIX}").read_text().split()[0]
            stat = path.stat()
        except (OSError, IndexError):
            continue
        out.append(Stored(name=path.name, bytes=stat.st_size, sha256=sha256,
                          received_at=iso(stat.st_mtime) or ""))
    return out


def prune(folder: Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` backups (and their hash files); their names."""
    doomed = [s.name for s in listing(folder)][:-keep] if keep > 0 else []
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
        with contextlib.suppress(FileNotFoundError):
            (folder / f"{name}{HASH_SUFFIX}").unlink()
    if doomed:
        _fsync_dir(folder)
    return doomed


def clean_temp(folder: Path) -> list[str]:
    """Remove what an upload cut short by a crash left behind; their names."""
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


def free_bytes(folder: Path) -> int:
    probe = folder if folder.exists() else folder.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
