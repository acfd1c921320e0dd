"""The api daemon's host controller: feeds events to the pure state machine, performs actions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from handshake import documents
from handshake.documents import HostDocument, SnapshotDocument, schema_of
from handshake.errors import EdgepairError
from handshake.messages import WakeReason, wake_reason
from handshake.util import atomic, privatefile, strictjson
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from pi import state as sm
from pi.config import PiConfig
from pi.dns import DnsBackend
from pi.heartbeat import Beat
from pi.power import diagnosis
from pi.schedule import next_wake, zone

log = logging.getLogger(__name__)

HOST_SCHEMA = schema_of(HostDocument)
SNAPSHOT_SCHEMA = schema_of(SnapshotDocument)
STATE_FILE = "host-state.json"
# The heartbeat loop tells the watchdog it lives at least this often, also while it waits
# out a long heartbeat_interval_s (the unit's WatchdogSec is 30 s).
KICK_S = 5.0


class HostObserver(Protocol):
    """Told of what the controller decided, under its lock (the usage ledger listens)."""

    def state_changed(self, before: sm.HostStatus, after: sm.HostStatus, now: float) -> None: ...

    def woken(self, reason: WakeReason, client: str | None, now: float) -> None: ...


@dataclass(slots=True)
class Alarm:
    message: str
    since: float


class HostController:
    """Owns the host status: one lock, one writer of host.json, snapshot.json and its state file."""

    def __init__(self, config: PiConfig, dns: DnsBackend, send_wol: Callable[[], Awaitable[None]],
                 probe: Callable[[], Awaitable[Beat]], *,
                 clock: Callable[[], float] = time.time,
                 kick: Callable[[str], None] = lambda name: None,
                 observers: Sequence[HostObserver] = ()) -> None:
        self.config = config
        self.observers = list(observers)
        self.describe_demand: Callable[[], dict[str, Any]] | None = None  # for host.json
        self.rules = sm.Rules(fall=config.host.fall, rise=config.host.rise,
                              boot_timeout_s=config.host.boot_timeout_s,
                              going_offline_grace_s=config.host.going_offline_grace_s)
        self.dns = dns
        self.send_wol = send_wol
        self.probe = probe
        self.clock = clock
        self.kick = kick
        self.quiet = QuietLogger(log)
        self._broken: set[str] = set()  # loops whose last iteration failed unexpectedly
        self.lock = asyncio.Lock()
        self.alarm: Alarm | None = None  # restored with the state (an alarm survives a restart)
        self.status = self._restore()
        self.last_beat: Beat | None = None
        self.dns_error: str | None = None
        self.dns_address: str | None = None
        self.last_wol: dict[str, Any] | None = None
        self.wol_sent = 0
        self.tz = zone(config.schedule)
        self.next_scheduled = self._next_scheduled(clock())
        self._last_publish = 0.0

    # -- state -------------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.config.private_dir / STATE_FILE

    def _restore(self) -> sm.HostStatus:
        restored = privatefile.read(self._state_path(), _saved_state, log=log)
        if restored is None:  # first start, or a bad file (set aside with a warning)
            return sm.initial(self.clock())
        status, self.alarm = restored
        log.info("restored host state %s since %s", status.state.value, iso(status.since))
        return status

    def _persist(self) -> None:
        try:
            alarm = None if self.alarm is None else {"message": self.alarm.message,
                                                     "since": self.alarm.since}
            atomic.write_json(self._state_path(), {**self.status.to_json(), "alarm": alarm},
                              mode=0o600)
        except OSError as exc:  # failover goes on; only a restart would forget the state
            self.quiet.failure("persist", "cannot save the host state to %s: %s",
                               self._state_path(), exc.strerror or exc)
        else:
            self.quiet.success("persist", "host state saved again")

    def desired_address(self) -> str:
        target = self.status.dns_target
        return self.config.host.address if target == "host" else self.config.pi.address

    # -- events ------------------------------------------------------------------------

    async def handle(self, event: sm.Event) -> sm.HostStatus:
        """Apply one event and perform its actions before returning (DNS switched on return)."""
        async with self.lock:
            now = self.clock()
            before = self.status
            self.status, actions = sm.step(before, event, now, self.rules)
            if before.state is not self.status.state:
                log.info("host %s → %s (%s)", before.state.value, self.status.state.value,
                         type(event).__name__)
            for action in actions:
                await self._perform(action, now)
            self._tell(event, before, now)
            changed = (before.state, before.since, before.wake_at) != (
                self.status.state, self.status.since, self.status.wake_at) or any(
                isinstance(a, sm.Alarm | sm.Resolved) for a in actions)
            if changed:
                self._persist()
            if changed or actions:
                self.publish(now)
            return self.status

    def _tell(self, event: sm.Event, before: sm.HostStatus, now: float) -> None:
        """Observers hear of every state change and of every new wake (not of resends)."""
        after = self.status
        if (before.state, before.since) == (after.state, after.since):
            return
        woke = after.state is sm.HostState.WAKING and before.state is not sm.HostState.WAKING
        client = event.client if isinstance(event, sm.WakeRequested) else None
        if woke and self.last_wol is not None:
            self.last_wol["client"] = client
        for observer in self.observers:
            try:
                observer.state_changed(before, after, now)
                if woke:
                    observer.woken(wake_reason(after.reason or "api"), client, now)
            except Exception as exc:  # an observer's bug must not stop failover
                self.quiet.failure("observer", "%s failed: %r", type(observer).__name__, exc)

    async def _perform(self, action: sm.Action, now: float) -> None:
        match action:
            case sm.SetDns():
                await self.apply_dns()
            case sm.SendWol(source=source):
                try:
                    await self.send_wol()
                except OSError as exc:
                    log.error("could not send the magic packet: %s", exc)
                    self.last_wol = {"at": iso(now), "source": source, "error": str(exc)}
                else:
                    self.wol_sent += 1
                    self.last_wol = {"at": iso(now), "source": source, "error": None}
            case sm.Alarm(message=message):
                log.warning("alarm: %s", message)
                self.alarm = Alarm(message, now)
            case sm.Resolved(message=message):
                log.info("%s", message)
                self.alarm = None

    async def apply_dns(self) -> None:
        """Point the name at the desired address; failures are retried by reconcile."""
        address = self.desired_address()
        try:
            await self.dns.set_address(address)
        except EdgepairError as exc:
            self.dns_error = str(exc)
            self.quiet.failure("dns", "DNS backend failed to switch to %s: %s", address, exc)
        else:
            self.dns_address = address
            self.dns_error = None
            self.quiet.success("dns", "DNS backend works again")

    async def reconcile(self) -> bool:
        """Read the record back and correct it; True when it had to be corrected."""
        async with self.lock:
            address = self.desired_address()
            try:
                served = await self.dns.get_address()
            except EdgepairError as exc:
                self.dns_error = str(exc)
                self.quiet.failure("dns", "DNS backend cannot be read: %s", exc)
                return False
            if served == address and self.dns_error is None:
                return False
            if served != address:
                log.warning("DNS record for %s is %s, expected %s: restoring",
                            self.config.dns.name, served, address)
            await self.apply_dns()
            self.publish(self.clock())
            return served != address

    # -- loops -------------------------------------------------------------------------

    async def heartbeat_loop(self) -> None:
        interval = self.config.host.heartbeat_interval_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            with self._survive("heartbeat"):
                beat = await self.probe()
                self.kick("heartbeat")
                self.last_beat = beat
                if beat.ok:
                    self.quiet.success("heartbeat", "host answers heartbeats again")
                    await self.handle(sm.HeartbeatOk())
                else:
                    self.quiet.failure("heartbeat", "heartbeat to %s failed: %s",
                                       self.config.host.url, beat.error)
                    await self.handle(sm.HeartbeatFail(beat.error or ""))
                await self.tick()
            self.kick("heartbeat")
            next_at = max(next_at + interval, loop.time())
            while (left := next_at - loop.time()) > 0:
                await asyncio.sleep(min(left, KICK_S))
                self.kick("heartbeat")

    async def tick(self) -> None:
        """Timers: the boot timeout, a one-shot wake_at, the daily schedule, the publish."""
        now = self.clock()
        await self.handle(sm.Tick())
        if self.next_scheduled is not None and now >= self.next_scheduled.timestamp():
            log.info("scheduled wake at %s", iso(self.next_scheduled))
            self.next_scheduled = self._next_scheduled(now)
            await self.handle(sm.WakeRequested("schedule"))
        if now - self._last_publish >= self.config.api.publish_interval_s:
            self.publish(now)

    async def reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.dns.reconcile_s)
            with self._survive("reconcile"):
                await self.reconcile()

    @contextlib.contextmanager
    def _survive(self, loop: str) -> Any:
        """A bug in one iteration must not end failover for good: log it, go on.

        The first failure is an ERROR with its traceback, repeats are DEBUG, and the
        next clean iteration says so (a host answering nonsense must not flood the log).
        """
        try:
            yield
        except Exception:
            if loop in self._broken:
                log.debug("%s loop: the same kind of failure again", loop, exc_info=True)
            else:
                self._broken.add(loop)
                log.exception("%s loop: unexpected error; it goes on", loop)
        else:
            if loop in self._broken:
                self._broken.discard(loop)
                log.info("%s loop: iterations complete again", loop)

    def _next_scheduled(self, now: float) -> datetime | None:
        return next_wake(self.config.schedule.wake, datetime.fromtimestamp(now, UTC), self.tz)

    # -- public files ------------------------------------------------------------------

    def next_wake(self) -> dict[str, Any] | None:
        candidates = []
        if self.status.wake_at is not None:
            candidates.append((self.status.wake_at, "host"))
        if self.next_scheduled is not None:
            candidates.append((self.next_scheduled.timestamp(), "schedule"))
        if not candidates:
            return None
        at, source = min(candidates)
        return {"at": iso(at), "source": source}

    def document(self, now: float) -> HostDocument:
        """What host.json and ``GET /api/v1/status`` hold."""
        beat = self.last_beat
        host = self.config.host
        return HostDocument(
            generated_at=iso(now) or "",
            interval_s=self.config.api.publish_interval_s,
            state=self.status.state.value,
            since=iso(self.status.since),
            reason=self.status.reason,
            last_heartbeat=None if beat is None else {
                "at": iso(beat.at), "ok": beat.ok, "latency_ms": beat.latency_ms,
                "error": beat.error, "boot_id": beat.boot_id, "uptime_s": beat.uptime_s},
            heartbeat={"interval_s": host.heartbeat_interval_s, "fall": host.fall,
                       "rise": host.rise},
            dns={"name": self.config.dns.name, "backend": self.config.dns.backend,
                 "target": self.status.dns_target, "address": self.desired_address(),
                 "applied": self.dns_address == self.desired_address()
                 and self.dns_error is None,
                 "error": self.dns_error},
            next_wake=self.next_wake(),
            last_wake=self.last_wol,
            boot_timeout_s=host.boot_timeout_s,
            alarm=None if self.alarm is None else {"message": self.alarm.message,
                                                   "since": iso(self.alarm.since)},
            power=self.power_diagnosis(now),
            demand=None if self.describe_demand is None else self.describe_demand(),
        )

    def power_diagnosis(self, now: float) -> dict[str, Any] | None:
        """Whether the host's plug still draws working power ("hung") or not ("off")."""
        return diagnosis.host_power(self.config, self.status.state.value, now)

    def publish(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._last_publish = now
        path = self.config.public_dir / "host.json"
        try:
            documents.publish(path, self.document(now))
        except OSError as exc:  # a full or read-only SD card: DNS failover goes on
            self.quiet.failure("publish", "cannot write %s: %s", path, exc.strerror or exc)
        else:
            self.quiet.success("publish", "%s written again", path)

    async def store_snapshot(self, reason: str, wake_at: float | None,
                             snapshot: dict[str, Any]) -> list[str]:
        """Write snapshot.json off the event loop (a 1 MB snapshot must not stall DNS).

        What UTF-8 cannot hold (a lone surrogate is valid JSON) is replaced, and the
        document says where (``sanitised``, also returned): stored, not refused.
        """
        now = self.clock()
        clean, sanitised = strictjson.storable(snapshot)
        if sanitised:
            log.warning("the host's snapshot had text that cannot be stored as UTF-8; "
                        "replaced (U+FFFD): %s", "; ".join(sanitised[:5]))
        document = SnapshotDocument(generated_at=iso(now) or "", received_at=iso(now),
                                    reason=reason, wake_at=iso(wake_at), snapshot=clean,
                                    sanitised=sanitised)
        stored = await asyncio.to_thread(documents.try_publish,
                                         self.config.public_dir / "snapshot.json", document,
                                         self.quiet, compact=True)
        return sanitised if stored else [*sanitised, "not stored: snapshot.json cannot be written"]

    async def start(self) -> None:
        """Assert the record for the restored state and publish before serving."""
        async with self.lock:
            await self.apply_dns()
        self.publish()

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        tasks = [asyncio.create_task(self.heartbeat_loop(), name="heartbeat"),
                 asyncio.create_task(self.reconcile_loop(), name="reconcile")]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _saved_state(data: Any) -> tuple[sm.HostStatus, Alarm | None]:
    """The state file's status and alarm; ValueError/KeyError/TypeError when it is not one."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {type(data).__name__}")
    status = sm.HostStatus.from_json(data)
    if not math.isfinite(status.since) or not (
            status.wake_at is None or math.isfinite(status.wake_at)):
        raise ValueError("expected finite times for since and wake_at")
    alarm = data.get("alarm")
    if isinstance(alarm, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return status, Alarm(str(alarm["message"]), float(alarm["since"]))
    return status, None
