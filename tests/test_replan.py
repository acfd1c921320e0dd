"""The replan wake: the pure decision, where valid_until is read from, and the loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from handshake import documents
from handshake.documents import ControlDocument, PlanSummary
from handshake.errors import ValidationError
from handshake.messages import WAKE_SOURCES, WakeRequest
from handshake.util.timeutil import iso
from pi import replan
from pi import state as sm
from pi.config import PiConfig, load
from pi.replan import plan_valid_until, replan_due
from tests.helpers import pi_toml

H = 3600.0
T = 1_780_000_000.0  # the plan's valid_until


@pytest.mark.parametrize(("now", "state", "last", "due"), [
    (T - 4 * H, "offline", None, False),  # more than replan_before_s (3 h) ahead
    (T - 3 * H, "offline", None, True),  # the window opens
    (T - 1 * H, "unreachable", None, True),
    (T + 1 * H, "offline", None, True),  # already expired: still renew it
    (T - 1 * H, "online", None, False),  # up: its planner pushes a plan by itself
    (T - 1 * H, "waking", None, False),
    (T - 1 * H, "going_offline", None, False),
    (T - 1 * H, "offline", T - 1 * H - 60, False),  # woken a minute ago for this plan
    (T - 1 * H, "offline", T - 1 * H - 179, False),
    (T - 1 * H, "offline", T - 1 * H - 180, True),  # boot_timeout passed, no new plan
    (T - 1 * H, "offline", T - 5 * H, True),  # that wake was for an earlier plan
])
def test_replan_due(now: float, state: str, last: float | None, due: bool) -> None:
    assert replan_due(T, now, 3 * H, state, last, boot_timeout_s=180) is due


def test_no_plan_means_no_wake() -> None:
    assert replan_due(None, T, 3 * H, "offline", None) is False


def test_clients_cannot_ask_for_a_plan_wake() -> None:
    assert "plan" not in WAKE_SOURCES
    with pytest.raises(ValidationError):
        WakeRequest.from_json({"source": "plan"})


def _config(tmp_path: Path) -> PiConfig:
    return load(pi_toml(tmp_path, extra='[control]\nprofile = "deye-sg-lp1"\n'
                                         'address = "127.0.0.1"\n'))


def test_valid_until_from_control_json_else_the_stored_plan(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.control is not None
    assert config.control.replan_before_s == 10800
    assert plan_valid_until(config) is None
    config.private_dir.mkdir(parents=True)
    (config.private_dir / "plan.json").write_text(json.dumps({"valid_until": iso(T + 60)}))
    assert plan_valid_until(config) == T + 60
    documents.publish(config.public_dir / "control.json", ControlDocument(
        generated_at=iso(T) or "", mode="plan",
        plan=PlanSummary(id="p", seq=1, valid_until=iso(T))))
    assert plan_valid_until(config) == T  # the plan in force wins
    documents.publish(config.public_dir / "control.json", ControlDocument(
        generated_at=iso(T) or "", mode="safe_state", plan=None))
    assert plan_valid_until(config) == T + 60  # safe state: the stored plan's expiry
    (config.private_dir / "plan.json").write_text("{not json")
    assert plan_valid_until(config) is None


class FakeController:
    def __init__(self) -> None:
        self.status = sm.HostStatus(state=sm.HostState.OFFLINE, since=0.0)
        self.rules = sm.Rules(boot_timeout_s=180)
        self.events: list[sm.Event] = []

    async def handle(self, event: sm.Event) -> sm.HostStatus:
        self.events.append(event)
        return self.status


async def test_the_loop_wakes_once_per_plan_window(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.control is not None
    config = msgspec.structs.replace(
        config, control=msgspec.structs.replace(config.control, replan_before_s=3 * H))
    config.private_dir.mkdir(parents=True)
    (config.private_dir / "plan.json").write_text(json.dumps({"valid_until": iso(T)}))
    clock = [T - 2 * H]
    controller = FakeController()
    task = asyncio.create_task(replan.run(config, controller, clock=lambda: clock[0],
                                          check_s=0.01))
    try:
        for _ in range(300):
            if controller.events:
                break
            await asyncio.sleep(0.01)
        assert controller.events == [sm.WakeRequested("plan")]
        clock[0] += 60  # a minute later, the host still asleep: no second wake
        await asyncio.sleep(0.1)
        assert len(controller.events) == 1
        clock[0] += 180  # past boot_timeout without a new plan: one retry
        for _ in range(300):
            if len(controller.events) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(controller.events) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
