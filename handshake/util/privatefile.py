"""Reading a daemon's private state files: strictly, and a bad one is set aside, never fatal.

A missing file is normal (a first start): no warning. A file that is too big, not strict
JSON (``strictjson``: also too deeply nested) or not what its owner expects is renamed to
``<name>.bad-<UTC time>`` — kept for a post-mortem, never deleted — with one WARNING, and
the daemon starts from its clean default. Only the file's owning process calls ``read``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from handshake.errors import ValidationError
from handshake.util import strictjson

T = TypeVar("T")
# Private documents are small (the replay cache, ~0.5 MB at its 10 000 nonces, is the
# biggest); past this a file is broken, and reading it whole would cost the Pi's memory.
MAX_BYTES = 4 * 1024 * 1024
# What a ``convert`` may raise for a document that is JSON but not the expected one.
CONVERT_ERRORS = (ValueError, TypeError, KeyError, ValidationError)

_log = logging.getLogger(__name__)


def read(path: Path, convert: Callable[[Any], T], *, max_bytes: int = MAX_BYTES,
         log: logging.Logger = _log, now: Callable[[], float] = time.time) -> T | None:
    """``convert(parsed JSON of path)``; None when the file is missing, unreadable or bad
    (a bad one is set aside with a WARNING naming it and the problem)."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:  # permissions, I/O error: leave it where it is for the admin
        log.warning("cannot read %s (%s): starting without it", path, exc.strerror or exc)
        return None
    try:
        if len(data) > max_bytes:
            raise strictjson.JsonError(f"larger than {max_bytes} bytes")
        return convert(strictjson.loads(data))
    except CONVERT_ERRORS as exc:
        set_aside(path, str(exc) or type(exc).__name__, log=log, now=now)
        return None


def set_aside(path: Path, problem: str, *, log: logging.Logger = _log,
              now: Callable[[], float] = time.time) -> Path | None:
    """Rename a bad ``path`` to ``<name>.bad-<UTC time>``; where it went (None if it could not)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now()))
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while target.exists():  # two bad files within a second: keep both
        n += 1
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
    try:
        os.replace(path, target)
    except OSError as exc:
        log.warning("%s is unusable (%s) and cannot be set aside (%s): ignoring it",
                    path, _short(problem), exc.strerror or exc)
        return None
    log.warning("%s is unusable (%s): set aside as %s; starting from a clean default",
                path, _short(problem), target.name)
    return target


def set_aside_database(path: Path, problem: object, *, log: logging.Logger = _log) -> Path:
    """Move a sqlite file that is not a usable database aside, with its -wal and -shm.

    ``<name>.broken-<unix time>`` (kept, never deleted), with one ERROR naming it; the
    caller then starts a new database at ``path``.
    """
    aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
    log.error("%s is not a usable database (%s): moved to %s, starting a new one",
              path, problem, aside)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
    return aside


def _short(problem: str, limit: int = 200) -> str:
    return problem if len(problem) <= limit else problem[:limit] + "…"
