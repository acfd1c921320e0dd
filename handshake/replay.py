"""The replay cache kept over restarts, the same on both sides (the Pi api, the host agent).

A clean stop saves the nonces still inside the replay horizon to a private file; the next
start reads it once and removes it. Without it (a first start, a kill -9, a bad file) the
new process cannot know what its predecessor accepted, so it refuses every request signed
before its own start: a captured request can never be played again across a restart.
The bound is the start itself, not the start minus a clock-skew allowance: any allowance
would reopen the window for the requests accepted in the seconds before a crash. A peer
whose clock lags is refused for at most that lag after a crash, and its retry succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handshake.auth import NonceCache, Verifier
from handshake.util import atomic, privatefile

NONCES_FILE = "handshake-nonces.json"
SCHEMA = "edgepair.nonces/1"

log = logging.getLogger(__name__)


class NonceStore:
    """Where a daemon keeps its replay cache between runs (``private/handshake-nonces.json``)."""

    def __init__(self, private_dir: Path) -> None:
        self.path = private_dir / NONCES_FILE

    def verifier(self, key: bytes, *, clock: Callable[[], float] = time.time,
                 now: float | None = None) -> Verifier:
        """The signature checker for this run: the saved cache, or refuse what predates us."""
        now = clock() if now is None else now
        saved = privatefile.read(self.path, lambda data: _saved(data, now), log=log)
        with contextlib.suppress(OSError):
            self.path.unlink()  # used once: a later crash must not find it again
        if saved is None:
            # Signatures carry whole seconds: one made in the second we started is ours.
            return Verifier(key, clock=clock, not_before=int(now))
        nonces, not_before = saved
        return Verifier(key, clock=clock, nonces=nonces, not_before=not_before)

    def save(self, verifier: Verifier) -> None:
        """At a clean stop: keep the cache for the next start (a few hundred bytes).

        A run that itself started without a cache passes its bound on: a run stopped
        before its window passed cannot vouch for what its crashed predecessor accepted.
        """
        document = {"schema": SCHEMA, "not_before": verifier.not_before,
                    "nonces": verifier.nonces.to_json()}
        try:
            atomic.write_json(self.path, document, mode=0o600, compact=True)
        except OSError as exc:
            log.warning("cannot save the replay cache to %s: %s; the next start refuses "
                        "requests signed before it", self.path, exc.strerror or exc)


def _saved(data: Any, now: float) -> tuple[NonceCache, float | None]:
    """The saved cache and bound; ValueError when ``data`` is not one. A bare object of
    nonce → time is the file of an earlier version (no bound)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return NonceCache.from_json(data, now), None
    not_before = data.get("not_before")
    if not_before is not None and (not isinstance(not_before, int | float)
                                   or isinstance(not_before, bool)):
        raise ValueError(f"not_before: expected a Unix time or null, got {not_before!r:.40}")
    return NonceCache.from_json(data.get("nonces"), now), not_before
