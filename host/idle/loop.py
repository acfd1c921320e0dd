"""The idle loop inside the host agent: check, decide, publish ``idle.json``, suspend.

A thin shell around ``decide``: every check_interval_s the checks run in a worker thread,
the decision is taken, ``public/idle.json`` is rewritten atomically, and on ``sleep`` the
host tells the Pi (going-offline, reason suspend, wake_at, the snapshot) and runs
suspend_command only after the Pi acknowledged. A suspend that fails at once brings the
Pi back (coming-online: DNS must never point at the Pi while the host is up) and backs
off. ``edgepair host sleep`` goes through the same ``suspend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from handshake.errors import EdgepairError
from handshake.util import atomic
from handshake.util.timeutil import iso, utcnow
from host import activity
from host.config import HostConfig
from host.idle import checks, wakes
from host.idle.checks import CheckResult, Probes
from host.idle.decide import Decision, History, decide, suspend_failed, suspended
from host.idle.wakes import NextWake
from host.notify import Kind, notify

log = logging.getLogger(__name__)

IDLE_FILE = "idle.json"
SCHEMA = "edgepair.idle/1"
# suspend_command returns on resume; the monotonic clock stands still while the machine
# sleeps, so this bounds only a command that hangs while the host is up.
SUSPEND_TIMEOUT_S = 300.0
# A suspend command that did not stop on SIGTERM gets this long before SIGKILL.
KILL_GRACE_S = 5.0

Notify = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class SuspendResult:
    """What one attempt to sleep came to; ``ok``: the command ran and returned 0."""

    ok: bool
    result: str  # "ok", "dry_run", "not_acknowledged", "failed"
    detail: str
    at: str
    wake_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "result": self.result, "detail": self.detail, "at": self.at,
                "wake_at": self.wake_at}


def probes_for(config: HostConfig) -> Probes:
    return Probes(smb_config=config.idle.smb_config)


def marker_dir(config: HostConfig) -> Path:
    return config.private_dir / activity.MARKER_DIR


async def suspend(config: HostConfig, wake_at: datetime | None, *, dry_run: bool = False,
                  notify: Notify = notify) -> SuspendResult:
    """Tell the Pi, wait for its ack, run suspend_command; coming-online when that fails."""
    idle = config.idle
    now, at = iso(utcnow()) or "", iso(wake_at)
    if dry_run or idle.dry_run:
        detail = f"would suspend now, wake_at {at or 'none'}"
        log.info("dry run: %s", detail)
        return SuspendResult(True, "dry_run", detail, now, at)
    try:
        await notify(config, "going-offline", reason="suspend", wake_at=wake_at)
    except EdgepairError as exc:
        log.warning("not suspending: the Pi did not acknowledge going-offline: %s", exc)
        return SuspendResult(False, "not_acknowledged", str(exc), now, at)
    log.info("suspending (wake_at %s): %s", at or "none", " ".join(idle.suspend_command))
    failure = await _run_suspend(idle.suspend_command)
    if failure is None:
        log.info("resumed: %s returned", idle.suspend_command[0])
        return SuspendResult(True, "ok", "suspended and resumed", now, at)
    log.warning("suspend failed: %s; telling the Pi the host is online", failure)
    await _tell(config, "coming-online", notify)
    return SuspendResult(False, "failed", failure, now, at)


@dataclass
class IdleLoop:
    """The loop's state between checks; ``step`` is one check-decide-act round."""

    config: HostConfig
    probes: Probes
    notify: Notify = notify
    clock: Callable[[], datetime] = utcnow
    history: History = field(default_factory=History)
    last_suspend: SuspendResult | None = None
    _failing: set[str] = field(default_factory=set)

    async def step(self) -> Decision:
        idle = self.config.idle
        doing = activity.current(marker_dir(self.config))
        results = await asyncio.to_thread(checks.run_all, idle, self.probes, doing)
        self._log_errors(results)
        now = self.clock()
        next_wake = await asyncio.to_thread(wakes.next_wake, idle, now, self.probes.run)
        decision = decide(results, now, self.history, idle, next_wake)
        self.history = decision.history
        log.debug("idle: %s: %s", decision.action, decision.why)
        await self._publish(results, doing, decision, next_wake, now)
        if decision.action == "sleep":
            log.info("idle: %s", decision.why)
            outcome = await suspend(self.config, decision.wake_at, notify=self.notify)
            self.last_suspend = outcome
            after = self.clock()
            self.history = suspended(self.history) if outcome.ok \
                else suspend_failed(self.history, after, idle)
            await self._publish(results, doing, decision, next_wake, after)
        return decision

    async def run(self, stop: asyncio.Event) -> None:
        """Step every check_interval_s until ``stop``; a failing step is logged, not fatal."""
        interval = self.config.idle.check_interval_s
        log.info("idle: suspending after %g s idle (check every %g s%s)",
                 self.config.idle.idle_after_s, interval,
                 ", dry run" if self.config.idle.dry_run else "")
        while not stop.is_set():
            try:
                await self.step()
            except Exception:
                log.exception("idle check round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()

    def _log_errors(self, results: list[CheckResult]) -> None:
        """First failure of a check at WARNING, repeats at DEBUG, recovery at INFO."""
        for r in results:
            if r.error and r.name not in self._failing:
                self._failing.add(r.name)
                log.warning("idle check %s failed (counts as busy): %s", r.name, r.detail)
            elif r.error:
                log.debug("idle check %s still failing: %s", r.name, r.detail)
            elif r.name in self._failing:
                self._failing.discard(r.name)
                log.info("idle check %s works again: %s", r.name, r.detail)

    async def _publish(self, results: list[CheckResult], doing: list[str], decision: Decision,
                       next_wake: NextWake, now: datetime) -> None:
        doc = document(self.config, results, doing, decision, next_wake, now, self.history,
                       self.last_suspend)
        try:
            await asyncio.to_thread(atomic.write_json, self.config.public_dir / IDLE_FILE, doc)
        except OSError as exc:
            log.warning("cannot write %s: %s", IDLE_FILE, exc)


def document(config: HostConfig, results: list[CheckResult], doing: list[str],
             decision: Decision, next_wake: NextWake, now: datetime, history: History,
             last_suspend: SuspendResult | None) -> dict[str, Any]:
    """``idle.json``: every check's verdict, the decision, idle since, next wake."""
    left = decision.seconds_left
    return {
        "schema": SCHEMA,
        "generated_at": iso(now),
        "enabled": config.idle.enabled,
        "dry_run": config.idle.dry_run,
        "checks": [r.to_json() for r in results],
        "activity": doing,
        "decision": decision.action,
        "why": decision.why,
        "idle_since": iso(history.idle_since),
        "seconds_left": None if left is None else round(left, 1),
        "idle_after_s": config.idle.idle_after_s,
        "next_wake": {"at": iso(next_wake.at), "event_at": iso(next_wake.event_at),
                      "source": next_wake.source or None, "error": next_wake.error},
        "failures": history.failures,
        "backoff_until": iso(history.backoff_until),
        "last_suspend": last_suspend.to_json() if last_suspend else None,
    }


async def run(config: HostConfig, stop: asyncio.Event) -> None:
    """The agent's idle task (``[idle] enabled``)."""
    await IdleLoop(config, probes_for(config)).run(stop)


async def _run_suspend(argv: tuple[str, ...]) -> str | None:
    """None when the command returned 0; else why it failed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc.strerror or exc}"
    try:
        async with asyncio.timeout(SUSPEND_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        await _kill(proc)
        return f"{argv[0]} did not return within {SUSPEND_TIMEOUT_S:g} s"
    except BaseException:
        await _kill(proc)
        raise
    if proc.returncode != 0:
        said = " ".join(out.decode(errors="replace").split())[:200]
        return f"{' '.join(argv)} exited {proc.returncode}" + (f": {said}" if said else "")
    return None


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        async with asyncio.timeout(KILL_GRACE_S):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _tell(config: HostConfig, kind: Kind, send: Notify) -> None:
    try:
        await send(config, kind)
    except EdgepairError as exc:
        log.warning("%s not acknowledged: %s; the Pi will see the host by heartbeat", kind, exc)
