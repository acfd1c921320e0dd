"""The backup loop in the api daemon: when the host is online, at most every ``every_h``.

``due_in`` is the whole decision (pure): how long until the next attempt, given the host's
status, the last good backup and the failures since. The loop around it builds the archive
in a thread (``bundle``), streams it to the host signed, checks that the host stored what
was sent (its SHA-256), and keeps the outcome in ``private/backup-state.json`` so a restart
neither repeats a good backup nor forgets a failing one. A backup never stands in the way
of failover: its errors are logged and retried, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from handshake.backupwire import PATH
from handshake.client import HandshakeClient
from handshake.errors import EdgepairError
from handshake.util import atomic, privatefile
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from pi import state as sm
from pi.backup import bundle
from pi.backup.config import BackupConfig
from pi.config import PiConfig

log = logging.getLogger("pi.backup")

STATE_FILE = "backup-state.json"
# After a failed attempt: 5 min, doubling, at most an hour (and never past every_h).
RETRY_FIRST_S = 300.0
RETRY_MAX_S = 3600.0
# The loop looks again at least this often (the host's state is also pushed to it).
POLL_S = 300.0
UPLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the loop remembers (and pi.json shows)."""

    last_ok: dict[str, Any] | None = None  # at, name, bytes, sha256, files
    last_error: dict[str, Any] | None = None  # at, message
    failures: int = 0  # in a row, since the last good one
    last_try: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"last_ok": self.last_ok, "last_error": self.last_error,
                "failures": self.failures, "last_try": self.last_try}

    @classmethod
    def from_json(cls, data: Any) -> Outcome:
        if not isinstance(data, dict):
            raise ValueError("expected an object")
        ok, error = data.get("last_ok"), data.get("last_error")
        if ok is not None and not (isinstance(ok, dict) and isinstance(ok.get("ts"), int | float)):
            raise ValueError("last_ok: expected an object with ts")
        if error is not None and not isinstance(error, dict):
            raise ValueError("last_error: expected an object")
        failures, last_try = data.get("failures", 0), data.get("last_try")
        if not isinstance(failures, int) or failures < 0:
            raise ValueError("failures: expected a count")
        if last_try is not None and not isinstance(last_try, int | float):
            raise ValueError("last_try: expected a time")
        return cls(last_ok=ok, last_error=error, failures=failures, last_try=last_try)


def due_in(host: sm.HostStatus, outcome: Outcome, now: float, config: BackupConfig) -> float:
    """Seconds until the next attempt (0: now; inf: not while the host is not online)."""
    if not config.enabled or host.state is not sm.HostState.ONLINE:
        return math.inf
    at = host.since + config.after_online_s
    if outcome.last_ok is not None:
        at = max(at, float(outcome.last_ok["ts"]) + config.every_h * 3600)
    if outcome.failures and outcome.last_try is not None:
        backoff = min(RETRY_FIRST_S * 2 ** (outcome.failures - 1), RETRY_MAX_S,
                      config.every_h * 3600)
        at = max(at, outcome.last_try + backoff)
    return max(0.0, at - now)


class BackupService:
    """Builds and sends the backups; a HostObserver so a host coming online is news at once."""

    def __init__(self, config: PiConfig, backup: BackupConfig, key: bytes,
                 host: Callable[[], sm.HostStatus], *, clock: Callable[[], float] = time.time,
                 hostname: str | None = None) -> None:
        self.config = config
        self.backup = backup
        self.key = key
        self.host = host
        self.clock = clock
        self.hostname = hostname or os.uname().nodename
        self.quiet = QuietLogger(log)
        self.outcome = privatefile.read(self.path, Outcome.from_json, log=log) or Outcome()
        self.running = False
        self.finished = asyncio.Event()  # set after each attempt (pi.json refreshes on it)
        self._news = asyncio.Event()

    @property
    def path(self) -> Path:
        return self.config.private_dir / STATE_FILE

    # -- HostObserver ----------------------------------------------------------------------

    def state_changed(self, before: sm.HostStatus, after: sm.HostStatus, now: float) -> None:
        if after.state is not before.state:
            self._news.set()

    def woken(self, reason: object, client: str | None, now: float) -> None:
        pass

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled."""
        await asyncio.to_thread(bundle.clear, self.config)  # what a kill -9 left
        while True:
            self._news.clear()  # before the decision: a change after it wakes the wait
            wait = due_in(self.host(), self.outcome, self.clock(), self.backup)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._news.wait(), min(wait, POLL_S))
                continue
            await self.attempt()

    async def attempt(self) -> bool:
        """Build, send, check; record the outcome. True when the host holds the backup."""
        try:
            return await self._attempt()
        finally:
            self.finished.set()  # recorded by now: pi.json shows this outcome

    async def _attempt(self) -> bool:
        started = self.clock()
        self.running = True
        try:
            built = await asyncio.to_thread(
                bundle.build, self.config, include_secrets=self.backup.include_secrets,
                now=started, hostname=self.hostname)
            for line in built.skipped:
                log.warning("backup: %s", line)
            answer = await self._send(built)
            if not isinstance(answer, dict) or answer.get("sha256") != built.sha256:
                raise EdgepairError(f"the host stored something else than was sent "
                                    f"(answer {answer!r})")
        except (EdgepairError, OSError, ValueError) as exc:
            self._record(replace(self.outcome, failures=self.outcome.failures + 1,
                                 last_try=started,
                                 last_error={"at": iso(self.clock()), "message": str(exc)}))
            self.quiet.failure("backup", "backup to the host failed: %s (next try in %.0f s)",
                               exc, due_in(self.host(), self.outcome, self.clock(), self.backup))
            return False
        finally:
            self.running = False
            await asyncio.to_thread(bundle.clear, self.config)
        took = self.clock() - started
        self._record(Outcome(last_ok={
            "ts": started, "at": iso(started), "name": answer.get("name"),
            "bytes": built.bytes, "sha256": built.sha256, "files": len(built.manifest.members),
            "took_s": round(took, 2)}, last_try=started))
        self.quiet.success("backup", "backup to the host works again")
        log.info("backup: %s on the host (%d bytes, %d files, %.1f s)", answer.get("name"),
                 built.bytes, len(built.manifest.members), took)
        return True

    async def _send(self, built: bundle.Built) -> Any:
        async with HandshakeClient(self.config.host.url, self.key) as client:
            return await client.stream(
                "PUT", f"{PATH}?keep={self.backup.keep}", _chunks(built.path),
                content_sha256=built.sha256, content_length=built.bytes,
                read_timeout_s=self.backup.upload_timeout_s)

    def _record(self, outcome: Outcome) -> None:
        self.outcome = outcome
        try:
            atomic.write_json(self.path, outcome.to_json(), mode=0o600)
        except OSError as exc:
            self.quiet.failure("state", "cannot keep %s: %s", self.path, exc.strerror or exc)

    def status(self) -> dict[str, Any]:
        """pi.json's ``backup``: the last good one, the last error, when the next is due."""
        now = self.clock()
        wait = due_in(self.host(), self.outcome, now, self.backup)
        ok = self.outcome.last_ok
        return {
            "enabled": self.backup.enabled,
            "running": self.running,
            "last_ok": None if ok is None else {k: v for k, v in ok.items() if k != "ts"},
            "last_error": self.outcome.last_error if self.outcome.failures else None,
            "next_due": None if math.isinf(wait) else iso(now + wait),
            "every_h": self.backup.every_h, "keep": self.backup.keep,
        }


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    """The archive in pieces, each read in a thread (the SD card may be slow)."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, UPLOAD_CHUNK):
            yield chunk
