"""The planner never lapses: wake the host ``[control] replan_before_s`` before the plan expires.

The plan carries its own ``valid_until`` and the planner runs on the host, which sleeps.
The api daemon reads the plan in force (control.json, else the plan file it stores for the
control daemon) and wakes the host with reason ``plan`` while there is still time for a
new one; ``replan_due`` is the decision, ``run`` the loop around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from handshake import documents
from handshake.documents import ControlDocument
from handshake.util import atomic
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso, parse_iso
from pi import state as sm
from pi.config import PiConfig
from pi.control import plan as plans

log = logging.getLogger(__name__)

# Plans are 15-minute slots valid for hours: a check every half minute is early enough.
CHECK_S = 30.0
# The host is on its way or up: it will push a plan if its planner works.
_BUSY = frozenset({"online", "waking", "going_offline"})


class Controller(Protocol):
    """What the loop needs of the HostController."""

    status: sm.HostStatus
    rules: sm.Rules

    async def handle(self, event: sm.Event) -> sm.HostStatus: ...


def replan_due(valid_until: float | None, now: float, replan_before_s: float, host_state: str,
               last_plan_wake_at: float | None, boot_timeout_s: float = 180.0) -> bool:
    """Whether to wake the host for a new plan now.

    Due from ``valid_until - replan_before_s`` on (an expired plan too: the Pi runs its
    safe state until a new one comes), unless the host is up or on its way. Once woken for
    this plan, not again unless ``boot_timeout_s`` passed without a new plan (the wake was
    missed, or the host slept again without planning).
    """
    if valid_until is None or host_state in _BUSY:
        return False
    window = valid_until - replan_before_s
    if now < window:
        return False
    if last_plan_wake_at is None or last_plan_wake_at < window:
        return True  # not yet woken for this plan
    return now - last_plan_wake_at >= boot_timeout_s


def plan_valid_until(config: PiConfig) -> float | None:
    """``valid_until`` of the plan in force (control.json), else of the stored plan file."""
    control = documents.read_or_none(config.public_dir / documents.FILES[ControlDocument],
                                     ControlDocument)
    if control is not None and control.plan is not None and control.plan.valid_until:
        try:
            return parse_iso(control.plan.valid_until).timestamp()
        except (ValueError, OverflowError):
            pass
    return _stored_valid_until(config.private_dir / plans.PLAN_FILE)


def _stored_valid_until(path: Path) -> float | None:
    try:
        doc: Any = atomic.read_json(path)
    except (OSError, ValueError):
        return None
    value = doc.get("valid_until") if isinstance(doc, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value).timestamp()
    except (ValueError, OverflowError):
        return None


async def run(config: PiConfig, controller: Controller, *,
              clock: Callable[[], float] = time.time, check_s: float = CHECK_S) -> None:
    """Check at start and every ``check_s``; wake with reason ``plan`` when due."""
    assert config.control is not None
    before_s = config.control.replan_before_s
    last_wake: float | None = None
    quiet = QuietLogger(log)
    while True:
        try:
            valid_until = await asyncio.to_thread(plan_valid_until, config)
        except OSError as exc:  # out of descriptors: next round
            quiet.failure("read", "cannot read the plan in force: %s", exc)
        else:
            quiet.success("read", "the plan in force is readable again")
            now = clock()
            if replan_due(valid_until, now, before_s, controller.status.state.value, last_wake,
                          controller.rules.boot_timeout_s):
                log.info("the plan in force expires at %s: waking the host to renew it",
                         iso(valid_until))
                last_wake = now
                await controller.handle(sm.WakeRequested("plan"))
        await asyncio.sleep(check_s)
