"""Paths below the inbox, looked up one component at a time without following a link.

A client of the share can replace any folder with a symlink to anywhere, at any moment;
a look-up by path string would follow it and read (then delete) files outside the inbox.
So every look-up starts at a descriptor of the inbox itself and opens each folder with
``O_NOFOLLOW | O_DIRECTORY`` relative to the one before; what is done to a file (open,
stat, rename, unlink) is done relative to its verified folder's descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from pi.inbox.outcome import FileChanged

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What opening a component with O_NOFOLLOW gives when it is a link or no longer a folder.
_NOT_INSIDE = (errno.ELOOP, errno.ENOTDIR)


class Escaped(FileChanged):
    """A link, or something other than a folder, where a folder of the inbox was."""


def open_dir(root: Path, rel: str = "") -> int:
    """A descriptor of the folder ``root/rel``, reached without following any link below
    ``root`` (the configured inbox itself may be one)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in _parts(rel):
            folder = _step(fd, part, rel)
            os.close(fd)
            fd = folder
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def parent(root: Path, rel: str) -> Iterator[tuple[int, str]]:
    """``rel``'s folder (a verified descriptor) and its name in it."""
    folder, _, name = rel.rpartition("/")
    _parts(name)
    fd = open_dir(root, folder)
    try:
        yield fd, name
    finally:
        os.close(fd)


def open_file(root: Path, rel: str, flags: int) -> int:
    """Open ``root/rel`` with ``flags``, following no link on the way or at the end."""
    with parent(root, rel) as (fd, name):
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Escaped(f"{rel}: a link, not a file") from exc
            raise


def lstat(root: Path, rel: str) -> os.stat_result:
    """What ``rel`` is (a link is reported as a link), reached through real folders only."""
    with parent(root, rel) as (fd, name):
        return os.stat(name, dir_fd=fd, follow_symlinks=False)


def walk(root: Path, folder: str = "",
         descend: Callable[[str], bool] = lambda rel: True,
         ) -> Iterator[tuple[str, int, list[os.DirEntry[str]]]]:
    """Each folder below ``root/folder`` (its relative path, a descriptor open while the
    caller has it, its entries); links are never entered, nor folders ``descend`` refuses.
    A folder that vanishes or turns into a link on the way is skipped."""
    stack = [folder]
    while stack:
        rel_dir = stack.pop()
        try:
            fd = open_dir(root, rel_dir)
        except (OSError, FileChanged):
            continue
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            yield rel_dir, fd, entries
        finally:
            os.close(fd)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and descend(rel):
                    stack.append(rel)


def _parts(rel: str) -> list[str]:
    parts = rel.split("/") if rel else []
    if any(p in ("", ".", "..") for p in parts):
        raise Escaped(f"{rel!r}: not a plain path below the inbox")
    return parts


def _step(fd: int, part: str, rel: str) -> int:
    """The folder ``part`` in ``fd``, never through a link."""
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in _NOT_INSIDE:
            raise Escaped(f"{rel}: {part!r} is a link or no longer a folder") from exc
        raise
