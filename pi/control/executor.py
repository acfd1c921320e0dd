"""The executor: one tick reads telemetry, decides, writes only what differs, settles, reads back.

Modes (control.json): ``following`` a plan slot applied and verified; ``safe`` the safe state
applied and verified; ``safe_unverified`` the safe state is wanted but not confirmed (device
down, a write that does not stick, not commissioned). It starts in ``safe_unverified`` and
follows a plan only after a verified apply. Devices are independent: one that does not
answer stops the plan everywhere, but every device that answers still gets its safe state.
A safe state that does not stick is written again with a backoff, not every tick.
A profile that must first probe the device (``[identify]``, SunSpec discovery) writes
nothing until the probe succeeds: a wrong device stays ``safe_unverified`` (wrong_device),
untouched, and is probed again each tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec

from handshake.util import atomic, privatefile
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso, utcnow
from pi.control import apply, probe
from pi.control import decide as d
from pi.control.apply import FOLLOWING, SAFE_UNVERIFIED
from pi.control.config import ControlConfig
from pi.control.device import Device, DeviceError
from pi.control.plan import Plan
from pi.control.profile import ImplausibleTelemetry, NotCommissioned, Register, WrongDevice

log = logging.getLogger(__name__)
quiet = QuietLogger(log)

# A write is tried this often; between tries a capped backoff (a busy or reconnecting device).
WRITE_ATTEMPTS = 3
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 2.0
# A safe state that does not stick (a device dropping writes, someone else writing the
# same registers) is written again after 1, 2, 4 … 60 min, not every tick: flash wears.
SAFE_RETRY_BASE_S = 60.0
SAFE_RETRY_MAX_S = 3600.0


class WriteBudget:
    """Register writes per UTC day (inverter settings live in flash, which wears)."""

    def __init__(self, limit: int, path: Path | None, today: Callable[[], date]) -> None:
        self.limit = limit
        self.path = path
        self.today = today
        self.day, self.used = today(), 0
        saved = None if path is None else privatefile.read(path, _saved_budget, log=log)
        if saved is not None and saved[0] == self.day.isoformat():
            self.used = saved[1]

    @property
    def writes_today(self) -> int:
        if self.today() != self.day:
            self.day, self.used = self.today(), 0
        return self.used

    def allows(self, n: int) -> bool:
        return self.writes_today + n <= self.limit

    def spend(self, n: int) -> None:
        self.used = self.writes_today + n

    def save(self) -> None:
        if self.path is None:
            return
        try:
            atomic.write_json(self.path, {"date": self.day.isoformat(), "writes": self.used}, 0o640)
        except OSError as exc:  # counted in memory still; only a restart would forget it
            log.warning("cannot save the write budget to %s: %s", self.path, exc.strerror or exc)


@dataclasses.dataclass(slots=True)
class Alarm:
    message: str
    since: datetime


class Executor:
    """Carries out decisions on the devices; the daemon calls ``tick`` and ``stop``."""

    def __init__(self, config: ControlConfig, devices: Mapping[str, Device], *,
                 baselines: Mapping[str, Mapping[str, int]], budget: WriteBudget,
                 clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 kick: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.devices = devices
        self.baselines = baselines
        self.budget = budget
        self.clock, self.sleep, self.monotonic = clock, sleep, monotonic
        self.kick = kick  # the systemd watchdog: a slow device must not look like a hung loop
        self.registers = control_registers(config)
        self.device_of = {name: key for name, (key, _) in self.registers.items()}
        self.plan: Plan | None = None
        self.state = d.State()
        self.decision: d.Decision | None = None
        self.mode, self.reason, self.detail = SAFE_UNVERIFIED, d.STARTING, "starting"
        self.telemetry: d.Telemetry | None = None
        self.actual: dict[str, int] | None = None  # the last read-back (raw): the device's state
        self.last_verify: float | None = None
        self.alarms: dict[str, Alarm] = {}
        self.writes = 0  # writes since start (tests and benchmarks count them)
        self._override: tuple[str, datetime] | None = None  # message, until
        self._verify_problem: str | None = None
        self._device_problem: tuple[str, str] | None = None
        # Devices that failed to answer in this tick: skipped, not asked again until the next.
        self._down: set[str] = set()
        self._safe_failures = 0  # safe applies in a row that did not stick
        self._safe_retry_at = 0.0  # monotonic: no safe-state write before this
        self.probed = not config.profile.needs_probe

    async def tick(self) -> None:
        """One round: telemetry → decision → apply and verify → alarms."""
        now = self.clock()
        self._device_problem = None
        self._down = set()
        if not self.probed and not await self._probe():
            self._update_alarms(now)
            return
        fault = await self._read_telemetry()
        decision = d.decide(self.plan, now, self.telemetry, self.state, self.config.load_names, fault)
        # A device that does not answer keeps no other device from its safe state: the
        # (safe) decision is carried out on every device that answers.
        await self._carry_out(decision, now)
        if fault is not None and fault[0] != d.IMPLAUSIBLE:
            self._set(SAFE_UNVERIFIED, *fault)
        self._update_alarms(now)

    async def stop(self) -> None:
        """Leave every device that answers in the safe state (SIGTERM, shutdown)."""
        if not self.probed:  # nothing was written: the device is as its owner left it
            self._set(SAFE_UNVERIFIED, d.STOPPED, f"edgepair control stopped; {self.detail}")
            return
        decision = d.Decision(False, d.STOPPED, "edgepair control stopped", self.state)
        self.last_verify = None  # read back before deciding what to write
        self._down, self._safe_retry_at = set(), 0.0  # the last chance: try everything now
        await self._carry_out(decision, self.clock())
        self._update_alarms(self.clock())

    # -- one tick ---------------------------------------------------------------------

    async def _probe(self) -> bool:
        """Identify the inverter and find its registers (SunSpec); False: write nothing yet."""
        profile = self.config.profile
        try:
            found = await probe.probe(profile, self.devices["inverter"])
        except DeviceError as exc:
            self._device_problem = _problem(exc)
            quiet.failure("probe", "control: cannot probe the inverter: %s", exc)
            self._set(SAFE_UNVERIFIED, *self._device_problem)
            return False
        except WrongDevice as exc:
            self._device_problem = (d.WRONG_DEVICE, str(exc))
            quiet.failure("probe", "control: wrong device at %s: %s; nothing is written",
                          self.config.address, exc)
            self._set(SAFE_UNVERIFIED, d.WRONG_DEVICE, f"{exc}; nothing is written")
            return False
        quiet.success("probe", "control: the inverter answers the probe again")
        if found.addressing == "sunspec":
            log.info("control: SunSpec device %s: models %s", found.device,
                     ", ".join(f"{m} at {a}" for m, a in found.models.items()))
        self.config = msgspec.structs.replace(self.config, device_profile=found)
        self.registers = control_registers(self.config)
        self.device_of = {name: key for name, (key, _) in self.registers.items()}
        self.probed = True
        return True

    async def _read_telemetry(self) -> tuple[str, str] | None:
        profile = self.config.profile
        try:
            raws = await self.devices["inverter"].read(list(profile.telemetry.values()))
            values = profile.decode_telemetry(raws)
        except DeviceError as exc:
            self.telemetry = None
            self._device_problem = _problem(exc)
            self._down.add("inverter")
            quiet.failure("telemetry", "control: %s", exc)
            return self._device_problem
        except ImplausibleTelemetry as exc:
            self.telemetry = None
            self._device_problem = (d.IMPLAUSIBLE, str(exc))
            quiet.failure("telemetry", "control: implausible telemetry: %s", exc)
            return self._device_problem
        quiet.success("telemetry", "control: telemetry from %s is back", self.config.address)
        self.telemetry = d.Telemetry(values["soc_pct"], values["battery_w"], values["grid_w"])
        return None

    async def _carry_out(self, decision: d.Decision, now: datetime) -> None:
        """Apply ``decision``; a following apply that fails falls back to the safe state once."""
        for _ in range(2):
            self.state, self.decision = decision.state, decision
            try:
                # Never leave a state that could not be restored: the safe state must resolve.
                d.targets(d.Decision(False, decision.reason, "", decision.state), self.config,
                          self.baselines)
                want = d.targets(decision, self.config, self.baselines)
            except NotCommissioned as exc:
                self._set(SAFE_UNVERIFIED, d.NOT_COMMISSIONED, str(exc))
                return
            fallback = await self._apply(decision, want, now)
            if fallback is None:
                return
            decision = fallback

    async def _apply(self, decision: d.Decision, want: dict[str, int],
                     now: datetime) -> d.Decision | None:
        """Drive the devices to ``want``; a safe-state decision to try instead, or None when done.

        The decisions are :mod:`pi.control.apply`'s; this performs them (read back, write,
        settle, read back again).
        """
        before = self.actual
        since = None if self.last_verify is None else self.monotonic() - self.last_verify
        overridden = False
        if apply.readback_due(want, before, since, self.config.verify_s):
            actual = await self._read_back()
            changed = apply.changed(want, before, actual)
            if changed:
                overridden = True
                fallback = self._note_override(decision, changed, before or {}, actual, now)
                if fallback is not None:
                    return fallback
        step = apply.before_write(self._facts(decision, want, now))
        if not isinstance(step, apply.Write):
            return self._conclude(step)
        written = await self._write(step.registers)
        failed = apply.after_write(self._facts(decision, want, now), written)
        if failed is not None:
            return self._conclude(failed)
        await self.sleep(self.config.settle_s)
        await self._read_back()
        return self._conclude(apply.verify(self._facts(decision, want, now), written=written,
                                           overridden=overridden))

    def _facts(self, decision: d.Decision, want: dict[str, int], now: datetime) -> apply.Facts:
        assert self.actual is not None
        return apply.Facts(
            decision, self.state, want, self.actual, self.device_of, now, frozenset(self._down),
            self._device_problem, self._verify_problem, self.budget.writes_today,
            self.budget.limit, self._safe_retry_at - self.monotonic())

    def _conclude(self, outcome: apply.Settled | apply.Fallback) -> d.Decision | None:
        """Carry out how an apply ends; the fallback decision to try, if any."""
        self._verify_problem = outcome.verify_problem
        if outcome.not_stuck:
            log.warning("control: write did not stick: %s", self._verify_problem)
        if isinstance(outcome, apply.Fallback):
            return outcome.decision
        if outcome.safe_ok is not None:
            self._safe_outcome(ok=outcome.safe_ok)
        if outcome.mode != SAFE_UNVERIFIED and (outcome.mode, outcome.reason) != (self.mode, self.reason):
            log.info("control: %s (%s: %s)", outcome.mode, outcome.reason, outcome.detail)
        self._set(outcome.mode, outcome.reason, outcome.detail)
        return None

    def _safe_outcome(self, *, ok: bool) -> None:
        """After writing the safe state: back off when it did not stick (or was fought over)."""
        if ok:
            self._safe_failures, self._safe_retry_at = 0, 0.0
            return
        delay = min(SAFE_RETRY_BASE_S * 2 ** self._safe_failures, SAFE_RETRY_MAX_S)
        self._safe_failures += 1
        self._safe_retry_at = self.monotonic() + delay
        log.warning("control: the safe state did not stick; next write in %.0f s", delay)

    def _note_override(self, decision: d.Decision, changed: list[str], before: dict[str, int],
                       actual: dict[str, int], now: datetime) -> d.Decision | None:
        """Registers changed behind our back: re-apply once per slot, then the safe state."""
        seen = apply.override(decision, self.state, changed, before, actual, now)
        log.warning("control: changed behind edgepair's back: %s", seen.what)
        self._override = (f"changed behind edgepair's back: {seen.what}", seen.until)
        self.state = seen.state
        return seen.fallback

    def _set(self, mode: str, reason: str, detail: str) -> None:
        self.mode, self.reason, self.detail = mode, reason, detail

    async def _read_back(self) -> dict[str, int]:
        """Read every control register of every device that answers (the rest: ``_down``)."""
        out: dict[str, int] = {}
        for key, regs in self._by_device().items():
            if key in self._down:
                continue
            self.kick()
            try:
                values = await self.devices[key].read([reg for _, reg in regs])
            except DeviceError as exc:
                self._down.add(key)
                self._device_problem = _problem(exc)
                quiet.failure(f"readback:{key}", "control: read-back of %s failed: %s", key, exc)
                continue
            quiet.success(f"readback:{key}", "control: read-back of %s works again", key)
            out.update({name: values[reg.name] for name, reg in regs})
        self.actual = out
        if not self._down:
            self.last_verify = self.monotonic()
        return out

    async def _write(self, diffs: Mapping[str, int]) -> bool:
        """Write each register with retries and capped backoff; False when one fails for good.

        A device that fails a write is skipped for the rest of the tick; the others go on.
        """
        written = 0
        ok = True
        try:
            for name, raw in diffs.items():
                key, reg = self.registers[name]
                if key in self._down:
                    continue
                failure = await self._write_one(key, reg, raw)
                if failure is not None:
                    ok = False
                    if failure.code is None:  # no answer: skip the rest of this device
                        self._down.add(key)
                    continue
                written += 1
                if self.actual is not None:  # ours: the next read-back must not call it an override
                    self.actual[name] = raw
            return ok
        finally:
            self.budget.spend(written)
            self.writes += written
            if written:
                await asyncio.to_thread(self.budget.save)

    async def _write_one(self, key: str, reg: Register, raw: int) -> DeviceError | None:
        """Write one register (retrying a silent or busy device); the final error, if any."""
        for attempt in range(WRITE_ATTEMPTS):
            self.kick()
            try:
                await self.devices[key].write(reg, raw)
                return None
            except DeviceError as exc:
                retry = exc.code is None or exc.busy
                if not retry or attempt == WRITE_ATTEMPTS - 1:
                    self._verify_problem = str(exc)
                    self._device_problem = _problem(exc)
                    log.warning("control: %s", exc)
                    return exc
                await self.sleep(min(BACKOFF_BASE_S * 2 ** attempt, BACKOFF_MAX_S))
        raise AssertionError("unreachable")  # pragma: no cover

    def _by_device(self) -> dict[str, list[tuple[str, Register]]]:
        out: dict[str, list[tuple[str, Register]]] = {}
        for name, (key, reg) in self.registers.items():
            out.setdefault(key, []).append((name, reg))
        return out

    # -- alarms and the public document -----------------------------------------------

    def _update_alarms(self, now: datetime) -> None:
        active: dict[str, str] = {}
        if self._device_problem is not None:
            active[self._device_problem[0]] = self._device_problem[1]
        if self.reason == d.NOT_COMMISSIONED:
            active[d.NOT_COMMISSIONED] = self.detail
        latch = self.state.latch if self.state.latch_until and now < self.state.latch_until else None
        if self._verify_problem is not None or latch == d.VERIFY_FAILED:
            active[d.VERIFY_FAILED] = self._verify_problem or self.state.latch_detail
        if latch in (d.HARD_LIMIT, d.EXTERNAL_OVERRIDE):
            active[latch] = self.state.latch_detail
        if self._override is not None:
            if now < self._override[1]:
                active.setdefault(d.EXTERNAL_OVERRIDE, self._override[0])
            else:
                self._override = None
        if not self.budget.allows(1):
            active[d.WRITE_BUDGET] = (f"all {self.budget.limit} register writes of today are used: "
                                      "only the safe state is written until tomorrow (UTC)")
        for code in list(self.alarms):
            if code not in active:
                log.info("control: alarm cleared: %s", code)
                del self.alarms[code]
        for code, message in active.items():
            if code not in self.alarms:
                log.warning("control: alarm %s: %s", code, message)
                self.alarms[code] = Alarm(message, now)
            else:
                self.alarms[code].message = message

    def document(self, now: datetime, interval_s: float) -> dict[str, Any]:
        """control.json."""
        decision = self.decision
        slot = decision.slot if decision is not None and self.mode == FOLLOWING else None
        registers = {name: reg.decode(self.actual[name])
                     for name, (_, reg) in self.registers.items()
                     if self.actual is not None and name in self.actual}
        t = self.telemetry
        readback = None if t is None and not registers else {
            "soc_pct": t.soc_pct if t else None, "battery_w": t.battery_w if t else None,
            "grid_w": t.grid_w if t else None, "registers": registers}
        return {
            "schema": "edgepair.control/1", "generated_at": iso(now), "interval_s": interval_s,
            "mode": self.mode, "reason": self.reason, "detail": self.detail,
            "plan": self.plan.summary(now) if self.plan is not None else None,
            "slot": None if slot is None or decision is None else {
                "start": iso(slot.start), "end": iso(slot.end), "battery_mode": slot.battery_mode,
                "effective_mode": decision.battery_mode, "power_w": slot.power_w,
                "soc_target": slot.soc_target, "export_cap_w": slot.export_cap_w,
                "loads": {name: slot.loads.get(name, False) for name in self.config.load_names}},
            "readback": readback,
            "alarms": [{"code": code, "message": a.message, "since": iso(a.since)}
                       for code, a in self.alarms.items()],
            "writes_today": self.budget.writes_today, "write_budget": self.budget.limit,
            "profile": self.config.profile.name,
        }


def _problem(exc: DeviceError) -> tuple[str, str]:
    """A device failure's reason code: silent (unreachable) or answering with an exception."""
    return (d.DEVICE_UNREACHABLE if exc.code is None else d.DEVICE_ERROR), str(exc)


def control_registers(config: ControlConfig) -> dict[str, tuple[str, Register]]:
    """Every register the executor writes: name → (device key, register)."""
    out = {name: ("inverter", reg) for name, reg in config.profile.registers.items()}
    for load in config.loads:
        for name, reg in load.profile.registers.items():
            out[f"load.{load.name}.{name}"] = (f"load.{load.name}", reg)
    return out


def _saved_budget(data: Any) -> tuple[str, int]:
    """The write-budget file's (date, writes); ValueError when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("date"), str) \
            or not isinstance(data.get("writes", 0), int) or isinstance(data.get("writes"), bool):
        raise ValueError('expected {"date": "YYYY-MM-DD", "writes": N}')
    return data["date"], int(data.get("writes", 0))
