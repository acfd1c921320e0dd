"""The executor's pure steps: from a decision's targets and the read-back to what to write and what it means.

No I/O and no clock: the executor reads back, writes and settles, and between these it asks
:func:`before_write` what to write (or how the apply ends), :func:`after_write` whether a failed
write gives up the plan, and :func:`verify` what the read-back after writing means. A
following decision that cannot be carried out ends in a :class:`Fallback`: a safe-state
decision for the executor to carry out instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time

from pi.control import decide as d

# Modes (control.json "mode").
FOLLOWING, SAFE, SAFE_UNVERIFIED = "following", "safe", "safe_unverified"


@dataclass(frozen=True, slots=True)
class Facts:
    """What one apply knows: the decision, its targets, the devices' read-back and the budget."""

    decision: d.Decision
    state: d.State  # the decision's state as it stands now (an override may have moved it)
    want: Mapping[str, int]  # register name → raw target
    actual: Mapping[str, int]  # the last read-back, with our own writes since
    device_of: Mapping[str, str]  # register name → device key
    now: datetime
    down: frozenset[str] = frozenset()  # devices that did not answer in this tick
    device_problem: tuple[str, str] | None = None  # (reason, detail) of the last device failure
    verify_problem: str | None = None
    writes_used: int = 0  # register writes of today
    write_limit: int = 0
    retry_in_s: float = 0.0  # > 0: the safe state did not stick and waits for its next write


@dataclass(frozen=True, slots=True)
class Write:
    """Write these registers (raw), then settle and read back."""

    registers: dict[str, int]


@dataclass(frozen=True, slots=True)
class Settled:
    """The apply is over: show this mode."""

    mode: str
    reason: str
    detail: str
    verify_problem: str | None  # what the executor's verify problem becomes
    safe_ok: bool | None = None  # the safe state was written: did it stick (None: not written)
    not_stuck: bool = False  # a write did not stick (verify_problem says which)


@dataclass(frozen=True, slots=True)
class Fallback:
    """The plan cannot be followed: carry out this safe-state decision instead."""

    decision: d.Decision
    verify_problem: str | None
    not_stuck: bool = False


@dataclass(frozen=True, slots=True)
class Override:
    """Registers changed behind our back (``what``), and what that does to the decision."""

    what: str
    until: datetime  # the alarm lasts until then
    state: d.State
    fallback: d.Decision | None  # None: the decision is (re-)applied


def readback_due(want: Mapping[str, int], actual: Mapping[str, int] | None,
                 since_verify_s: float | None, verify_s: float) -> bool:
    """Read back before deciding: never read, not verified lately, or the targets moved."""
    return (actual is None or since_verify_s is None or since_verify_s >= verify_s
            or any(actual.get(n) != v for n, v in want.items()))


def changed(want: Mapping[str, int], before: Mapping[str, int] | None,
            actual: Mapping[str, int]) -> list[str]:
    """Registers that differ between two read-backs.

    Only our own writes change a register between two read-backs (and each write is followed
    by one): any other difference was made behind our back.
    """
    if before is None:
        return []
    return sorted(n for n in want if n in before and n in actual and actual[n] != before[n])


def override(decision: d.Decision, state: d.State, names: list[str], before: Mapping[str, int],
             actual: Mapping[str, int], now: datetime) -> Override:
    """Registers changed behind our back: re-apply once per slot, then the safe state."""
    what = ", ".join(f"{n} = {actual.get(n)} (was {before.get(n)})" for n in names)
    until = decision.slot.end if decision.slot else end_of_day(now)
    if not decision.follow:
        return Override(what, until, state, None)  # the safe state is simply restored
    state, reapply = d.on_override(state, decision, names)
    fallback = None if reapply else _safe(d.EXTERNAL_OVERRIDE, state.latch_detail, state)
    return Override(what, until, state, fallback)


def before_write(f: Facts) -> Write | Settled | Fallback:
    """What to write: only registers whose read-back differs, within the budget and backoff."""
    decision = f.decision
    if decision.follow and f.down:
        return Fallback(_device_safe(f), f.verify_problem)
    diffs = {n: v for n, v in reachable(f).items() if f.actual.get(n) != v}
    if not diffs:
        return _done(f, None)
    if decision.follow and f.writes_used + len(diffs) > f.write_limit:
        detail = (f"{f.writes_used} of {f.write_limit} register writes used "
                  f"today; following the plan needs {len(diffs)} more")
        return Fallback(_latched(f.state, d.WRITE_BUDGET, detail, end_of_day(f.now)),
                        f.verify_problem)
    if not decision.follow and f.retry_in_s > 0:
        return Settled(SAFE_UNVERIFIED, decision.reason, f"{decision.detail}; "
                       f"{f.verify_problem or 'the safe state did not stick'}; next try in "
                       f"{f.retry_in_s:.0f} s", f.verify_problem)
    return Write(diffs)


def after_write(f: Facts, written: bool) -> Fallback | None:
    """A following write that failed gives up the plan (until the slot ends); else go on."""
    if written or not f.decision.follow:
        return None
    return Fallback(_latched(f.state, d.VERIFY_FAILED, f.verify_problem or "write failed",
                             _slot_end(f)), f.verify_problem)


def verify(f: Facts, *, written: bool, overridden: bool) -> Settled | Fallback:
    """What the read-back after writing means: verified, a fallback, or the safe state unverified."""
    decision = f.decision
    if decision.follow and f.down:
        return Fallback(_device_safe(f), f.verify_problem)
    wrong = _not_stuck(f)
    if wrong is not None and decision.follow:
        return Fallback(_latched(f.state, d.VERIFY_FAILED, wrong, _slot_end(f)), wrong,
                        not_stuck=True)
    safe_ok = None if decision.follow else written and wrong is None and not overridden
    if wrong is not None:
        return Settled(SAFE_UNVERIFIED, d.VERIFY_FAILED, wrong, wrong, safe_ok, not_stuck=True)
    if not written:
        return Settled(SAFE_UNVERIFIED, decision.reason,
                       f"{decision.detail}; {f.verify_problem or f.device_problem}",
                       f.verify_problem, safe_ok)
    return _done(f, safe_ok)


def reachable(f: Facts) -> dict[str, int]:
    """The targets on the devices that answer."""
    return {n: v for n, v in f.want.items() if f.device_of[n] not in f.down}


def end_of_day(now: datetime) -> datetime:
    """The next UTC midnight (the write budget's day)."""
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), dt_time.min, UTC)


def _done(f: Facts, safe_ok: bool | None) -> Settled:
    """Every reachable register holds its target."""
    if f.down:  # what answers is in the safe state; the rest is not verified
        reason, detail = f.device_problem or (d.DEVICE_UNREACHABLE, "a device is down")
        return Settled(SAFE_UNVERIFIED, reason, detail, None, safe_ok)
    mode = FOLLOWING if f.decision.follow else SAFE
    return Settled(mode, f.decision.reason, f.decision.detail, None, safe_ok)


def _not_stuck(f: Facts) -> str | None:
    """The reachable registers that do not read what was written, or None."""
    wrong = {n: (f.actual.get(n), v) for n, v in reachable(f).items() if f.actual.get(n) != v}
    if not wrong:
        return None
    return "; ".join(f"{n} reads {got} after writing {v}" for n, (got, v) in sorted(wrong.items()))


def _device_safe(f: Facts) -> d.Decision:
    """A device does not answer: the plan is followed on all devices or on none."""
    reason, detail = f.device_problem or (d.DEVICE_UNREACHABLE, "a device does not answer")
    return _safe(reason, detail, f.state)


def _latched(state: d.State, reason: str, detail: str, until: datetime) -> d.Decision:
    return _safe(reason, detail, d.latch(state, reason, detail, until))


def _safe(reason: str, detail: str, state: d.State) -> d.Decision:
    return d.Decision(False, reason, detail, dataclasses.replace(state, battery_mode=None))


def _slot_end(f: Facts) -> datetime:
    return f.decision.slot.end if f.decision.slot else f.now
