"""The backup archive: a consistent copy of the Pi's state, every member hashed.

What goes in: the config file; every regular file under ``private/`` (sqlite databases
through sqlite's online backup API — a consistent snapshot while the daemons keep
writing, never a copy of a live file — and the other private files, which their one
writer replaces atomically, as they are); a power history kept outside ``private/``
(``[power] database``); the secrets file only with ``include_secrets``. Not: sqlite's
-wal/-shm/-journal files (the snapshot holds their content), files set aside as broken
(``*.bad-*``, ``*.broken-*``), symlinks, and the work folder itself.

Blocking: the service calls ``build`` in a thread. Its only writes are the snapshots and
the archive, in ``private/.backup-tmp/``, removed after the upload.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from handshake import __version__
from handshake.backupwire import MANIFEST, Manifest, Member
from handshake.util.timeutil import iso
from pi.config import PiConfig
from pi.power.history import database_path

WORK_DIR = ".backup-tmp"
ARCHIVE = "backup.tar.gz"
SQLITE_MAGIC = b"SQLite format 3\x00"
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal")
_SET_ASIDE = (".bad-", ".broken-")
# A private file other than a database bigger than this is not state the Pi wrote: skipped.
MAX_PLAIN_BYTES = 64 * 1024 * 1024
# The archive is written through gzip at this level: a Pi 3B+ core packs ~10 MB/s.
GZIP_LEVEL = 6
READ_CHUNK = 256 * 1024
# A JSON file that does not parse is read again this often, this far apart.
JSON_TRIES = 5
JSON_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class Source:
    """One file to back up: its member name, kind, where it is, whether it is sqlite."""

    name: str
    kind: str
    path: Path
    sqlite: bool


@dataclass(frozen=True, slots=True)
class Built:
    """The archive on disk, its SHA-256 and size, and what it holds."""

    path: Path
    sha256: str
    bytes: int
    manifest: Manifest
    skipped: tuple[str, ...]


def work_dir(config: PiConfig) -> Path:
    """Where the snapshots and the archive are built: ``[backup] work_dir``/edgepair-backup,
    else ``private/.backup-tmp`` (one backup writes about the databases' size plus the
    archive there; a tmpfs spares the SD card those writes)."""
    chosen = config.backup.work_dir if config.backup is not None else None
    return chosen / "edgepair-backup" if chosen is not None else config.private_dir / WORK_DIR


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def sources(config: PiConfig, include_secrets: bool) -> tuple[list[Source], list[str]]:
    """What the backup holds, and what was left out on purpose (with why)."""
    out = [Source(f"config/{config.file.name}", "config", config.file, False)]
    skipped: list[str] = []
    private = config.private_dir
    for path in _private_files(private):
        rel = path.relative_to(private).as_posix()
        if rel.endswith(_SKIP_SUFFIXES) or any(mark in path.name for mark in _SET_ASIDE):
            continue
        sqlite = is_sqlite(path)
        if not sqlite and path.stat().st_size > MAX_PLAIN_BYTES:
            skipped.append(f"left out private/{rel}: larger than {MAX_PLAIN_BYTES} bytes and "
                           f"not a database")
            continue
        out.append(Source(f"private/{rel}", "private", path, sqlite))
    if config.power is not None:
        history = database_path(config.power, private)
        if not history.is_relative_to(private) and history.is_file():
            out.append(Source(f"database/{history.name}", "database", history, True))
    if include_secrets:
        out.append(Source(f"secrets/{config.pi.secrets_file.name}", "secrets",
                          config.pi.secrets_file, False))
    return out, skipped


def _private_files(private: Path) -> Iterator[Path]:
    """Regular files under private/, symlinks not followed, the work folder left out."""
    for root, dirs, files in os.walk(private, followlinks=False):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not (here == private and d == WORK_DIR)
                         and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            if path.is_file() and not path.is_symlink():
                yield path


def build(config: PiConfig, *, include_secrets: bool, now: float, hostname: str) -> Built:
    """Snapshot, hash and pack every source into ``private/.backup-tmp/backup.tar.gz``."""
    work = work_dir(config)
    clear(config)
    work.mkdir(mode=0o700, parents=True)
    found, skipped = sources(config, include_secrets)
    staged: list[tuple[Member, Path | bytes]] = []
    for source in found:
        if source.sqlite:
            copy = work / f"snapshot-{len(staged)}.sqlite3"
            snapshot(source.path, copy)
            staged.append((_member(source, *_digest(copy)), copy))
        else:
            data, note = read_settled(source)
            if note:
                skipped.append(note)
            staged.append((_member(source, hashlib.sha256(data).hexdigest(), len(data)), data))
    manifest = Manifest(created_at=iso(now) or "", hostname=hostname, version=__version__,
                        config_file=str(config.file), state_dir=str(config.pi.state_dir),
                        include_secrets=include_secrets,
                        members=tuple(member for member, _ in staged))
    archive = work / ARCHIVE
    with archive.open("wb") as raw:
        sink = _Hashing(raw)
        with tarfile.open(fileobj=sink, mode="w:gz", compresslevel=GZIP_LEVEL,
                          format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, io.BytesIO(msgspec.json.encode(manifest)), now)
            for member, content in staged:
                if isinstance(content, bytes):
                    _add(tar, member.name, io.BytesIO(content), now)
                else:
                    with content.open("rb") as f:
                        _add(tar, member.name, f, now, size=member.bytes)
                    content.unlink()  # the archive holds it now: half the SD space
        raw.flush()
        os.fsync(raw.fileno())
    return Built(path=archive, sha256=sink.hash.hexdigest(), bytes=sink.size,
                 manifest=manifest, skipped=tuple(skipped))


def read_settled(source: Source, tries: int = JSON_TRIES,
                 pause_s: float = JSON_PAUSE_S) -> tuple[bytes, str | None]:
    """A private file's bytes; a JSON file read again while it does not parse (a writer
    that rewrites in place, as tinydb does, may be mid-write), then taken as it is."""
    data = source.path.read_bytes()
    if source.path.suffix != ".json":
        return data, None
    for _ in range(tries):
        try:
            json.loads(data)
        except ValueError:
            time.sleep(pause_s)
            data = source.path.read_bytes()
        else:
            return data, None
    return data, f"{source.name}: not valid JSON after {tries} reads (backed up as it is)"


def snapshot(database: Path, target: Path) -> None:
    """A consistent copy of a live sqlite database (WAL writers go on meanwhile)."""
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=4096)  # in steps: a writer is never held up long
        finally:
            copy.close()
    finally:
        source.close()


def clear(config: PiConfig) -> None:
    """Remove the work folder (what a build or upload cut short by kill -9 left)."""
    shutil.rmtree(work_dir(config), ignore_errors=True)


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _member(source: Source, sha256: str, size: int) -> Member:
    return Member(name=source.name, kind=source.kind, bytes=size, sha256=sha256,
                  sqlite=source.sqlite)


def _add(tar: tarfile.TarFile, name: str, f: BinaryIO, now: float, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    if size is None:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(0)
    info.size = size
    info.mtime = int(now)
    info.mode = 0o600
    tar.addfile(info, f)


class _Hashing(io.RawIOBase):
    """A write-only file that hashes what passes through to ``raw``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.raw.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)
