"""The pure decision: no sockets, no clock."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from pi.control import decide as d
from pi.control import plan as plans
from pi.control import profile as profiles
from pi.control.config import ControlConfig
from pi.control.profile import NotCommissioned
from tests.test_control_support import LIMITS, SIM, T0, load_config, plan_doc

OK = d.Telemetry(soc_pct=50, battery_w=0, grid_w=300)
CHARGE = {"battery_mode": "charge", "power_w": 2000, "soc_target": 80}


def make(*slots: dict[str, object], plan_id: str = "p1") -> plans.Plan:
    return plans.validate(plan_doc(T0, list(slots), plan_id=plan_id), LIMITS, ("boiler",))


def test_no_plan_pending_expired() -> None:
    assert d.decide(None, T0, OK, d.State()).reason == d.NO_PLAN
    plan = make(CHARGE)
    early = d.decide(plan, T0 - timedelta(seconds=1), OK, d.State())
    assert (early.follow, early.reason) == (False, d.PLAN_PENDING)
    late = d.decide(plan, T0 + timedelta(minutes=15), OK, d.State())
    assert (late.follow, late.reason) == (False, d.PLAN_EXPIRED)
    assert "expired at 2030-06-01T12:15:00.000Z" in late.detail


def test_a_fault_wins_over_the_plan() -> None:
    decision = d.decide(make(CHARGE), T0, None, d.State(), fault=(d.DEVICE_UNREACHABLE, "down"))
    assert (decision.follow, decision.reason, decision.detail) == (False, d.DEVICE_UNREACHABLE, "down")
    assert d.decide(make(CHARGE), T0, None, d.State()).reason == d.DEVICE_UNREACHABLE


def test_following_a_slot() -> None:
    decision = d.decide(make({**CHARGE, "loads": {"boiler": True}}), T0, OK, d.State(),
                        loads=("boiler",))
    assert decision.follow
    assert decision.battery_mode == "charge"
    assert decision.values == {"power_w": 2000.0, "soc_target": 80.0, "export_cap_w": None}
    assert decision.loads == {"boiler": "on"}
    assert decision.state.plan_id == "p1"


@pytest.mark.parametrize(("soc", "previous", "mode"), [
    (79.0, None, "charge"), (80.0, None, "hold"), (85.0, "charge", "hold"),
    (78.5, "hold", "hold"),  # inside the hysteresis band
    (77.9, "hold", "charge"),
])
def test_charge_holds_at_its_target(soc: float, previous: str | None, mode: str) -> None:
    state = d.State(plan_id="p1", battery_mode=previous)
    decision = d.decide(make(CHARGE), T0, dataclasses.replace(OK, soc_pct=soc), state)
    assert decision.battery_mode == mode


@pytest.mark.parametrize(("soc", "previous", "mode"), [
    (10.5, None, "normal"), (10.0, None, "hold"), (11.9, "hold", "hold"), (12.1, "hold", "normal"),
])
def test_normal_holds_at_the_soc_floor(soc: float, previous: str | None, mode: str) -> None:
    state = d.State(plan_id="p1", battery_mode=previous)
    decision = d.decide(make({"battery_mode": "normal"}), T0, dataclasses.replace(OK, soc_pct=soc), state)
    assert decision.battery_mode == mode


DISCHARGE = {"battery_mode": "discharge", "power_w": 1500, "soc_target": 30}


@pytest.mark.parametrize(("slot", "soc", "previous", "mode"), [
    (DISCHARGE, 31.0, None, "discharge"), (DISCHARGE, 30.0, None, "hold"),
    (DISCHARGE, 31.9, "hold", "hold"), (DISCHARGE, 32.1, "hold", "discharge"),
    ({"battery_mode": "discharge", "power_w": 1500}, 10.0, None, "hold"),  # no target: the Pi's floor
    ({"battery_mode": "discharge", "power_w": 0}, 10.0, None, "discharge"),  # at rest stays at rest
    ({"battery_mode": "limit_export", "export_cap_w": 0}, 50.0, None, "limit_export"),
    ({"battery_mode": "limit_export", "export_cap_w": 0}, 10.0, None, "hold"),
])
def test_discharge_and_limit_export_hold_at_their_floor(slot: dict[str, object], soc: float,
                                                         previous: str | None, mode: str) -> None:
    state = d.State(plan_id="p1", battery_mode=previous)
    decision = d.decide(make(slot), T0, dataclasses.replace(OK, soc_pct=soc), state)
    assert decision.battery_mode == mode
    assert decision.values["export_cap_w"] == slot.get("export_cap_w")


def test_hard_limit_needs_two_readings_and_latches_to_the_slot_end() -> None:
    plan = make(CHARGE, CHARGE)
    hot = dataclasses.replace(OK, battery_w=-6000)  # 6 kW out of a battery limited to 5 kW
    first = d.decide(plan, T0, hot, d.State())
    assert first.follow
    assert first.state.strikes == 1
    second = d.decide(plan, T0 + timedelta(seconds=5), hot, first.state)
    assert (second.follow, second.reason) == (False, d.HARD_LIMIT)
    assert "discharging at 6000 W" in second.detail
    calm = d.decide(plan, T0 + timedelta(seconds=10), OK, second.state)
    assert calm.reason == d.HARD_LIMIT
    next_slot = d.decide(plan, T0 + timedelta(minutes=15), OK, calm.state)
    assert next_slot.follow
    fresh = d.decide(make(CHARGE, plan_id="p2"), T0 + timedelta(seconds=10), OK, second.state)
    assert fresh.follow  # a new plan is a fresh start


def test_grid_import_limit_applies_while_charging() -> None:
    plan = plans.validate(plan_doc(T0, [CHARGE]), dataclasses.replace(LIMITS, grid_import_max_w=3000), ())
    heavy = dataclasses.replace(OK, grid_w=5000)
    state = d.decide(plan, T0, heavy, d.State()).state
    assert d.decide(plan, T0, heavy, state).reason == d.HARD_LIMIT


def test_override_is_reapplied_once_per_slot() -> None:
    plan = make(CHARGE, CHARGE)
    decision = d.decide(plan, T0, OK, d.State())
    state, again = d.on_override(decision.state, decision, ["mode"])
    assert again
    state, again = d.on_override(state, decision, ["mode"])
    assert not again
    assert state.latch == d.EXTERNAL_OVERRIDE
    assert state.latch_until == T0 + timedelta(minutes=15)
    later = d.decide(plan, T0 + timedelta(minutes=15), OK, state)
    state, again = d.on_override(later.state, later, ["mode"])
    assert again  # a new slot, a new chance


def test_targets_resolve_profiles_and_loads() -> None:
    config = ControlConfig.of(profile=SIM, address="127.0.0.1", limits=LIMITS, loads=(load_config(502),))
    follow = d.decide(make({**CHARGE, "loads": {"boiler": True}}), T0, OK, d.State(), ("boiler",))
    assert d.targets(follow, config, {}) == {"mode": 2, "charge_w": 2000, "soc_target": 80,
                                             "export_limit_w": 65535, "load.boiler.switch": 1}
    safe = d.decide(None, T0, OK, d.State(), ("boiler",))
    baseline = {"inverter": {"mode": 0, "charge_w": 0, "soc_target": 90, "max_discharge_w": 3000},
                "load.boiler": {"switch": 1}}
    assert d.targets(safe, config, baseline) == {"mode": 0, "charge_w": 0, "soc_target": 90,
                                                 "max_discharge_w": 3000, "discharge_w": 0,
                                                 "export_limit_w": 65535, "load.boiler.switch": 1}


def test_targets_without_a_baseline_need_commissioning() -> None:
    deye = profiles.load(profiles.PROFILES_DIR / "deye-sg-lp1.toml")
    config = ControlConfig.of(profile=deye, address="127.0.0.1", limits=LIMITS)
    with pytest.raises(NotCommissioned, match="edgepair control commission"):
        d.targets(d.decide(None, T0, OK, d.State()), config, {})
