"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from handshake.util import strictjson


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, document: Any, mode: int = 0o644, *, compact: bool = False) -> None:
    """Write ``document`` as JSON atomically (``compact`` for big documents: the C encoder)."""
    if compact:
        data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        data = json.dumps(document, indent=1, ensure_ascii=False).encode()
    write_bytes(path, data + b"\n", mode)


def read_json(path: Path) -> Any:
    """Read a JSON file strictly (``strictjson``: a ValueError when it is not JSON we
    accept); ``None`` when it does not exist. Daemons read their private files with
    ``privatefile.read``, which also sets a bad one aside."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return strictjson.loads(data)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
