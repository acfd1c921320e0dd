"""What the host is doing right now that must keep it awake: a busy registry.

``with activity.busy("inbox upload"): ...`` counts the activity for as long as the block
runs (threads and tasks alike); ``current()`` lists what is in progress. The idle loop
reads it on every check, so an upload, a plan push or a notification in flight is never
cut short by a suspend. Another process (``edgepair host plan``, run by its timer) passes
``marker_dir``: a file ``<what>.<pid>`` stands there for the duration, and ``current``
counts the files whose process is still alive (a crash leaves nothing that keeps the host up).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Under the host's private dir: where other processes mark what they are doing.
MARKER_DIR = "activity"

_lock = threading.Lock()
_counts: Counter[str] = Counter()


@contextmanager
def busy(what: str, marker_dir: Path | None = None) -> Iterator[None]:
    """Count ``what`` as in progress until the block ends (also by an exception)."""
    marker = _mark(marker_dir, what) if marker_dir is not None else None
    with _lock:
        _counts[what] += 1
    try:
        yield
    finally:
        with _lock:
            _counts[what] -= 1
            if _counts[what] <= 0:
                del _counts[what]
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()


def current(marker_dir: Path | None = None) -> list[str]:
    """What is in progress, sorted; ``"inbox upload ×3"`` when there are several."""
    with _lock:
        counts = Counter(_counts)
    if marker_dir is not None:
        counts.update(_marked(marker_dir))
    return [what if n == 1 else f"{what} ×{n}" for what, n in sorted(counts.items())]


def _mark(marker_dir: Path, what: str) -> Path | None:
    """The marker file of this process, or None when it cannot be written (never fatal)."""
    path = marker_dir / f"{what}.{os.getpid()}"
    try:
        marker_dir.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        return None
    return path


def _marked(marker_dir: Path) -> Iterator[str]:
    """The activities other processes marked, unless their process is gone."""
    try:
        names = [p.name for p in marker_dir.iterdir()]
    except OSError:
        return
    for name in names:
        what, _, pid = name.rpartition(".")
        if not what or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if _alive(int(pid)):
            yield what


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
