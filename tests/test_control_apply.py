"""Properties of the executor's pure apply steps (pi/control/apply.py): no devices, no clock."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi.control import apply
from pi.control import decide as d
from pi.control import plan as plans
from pi.control.config import ControlConfig, Limits
from pi.control.executor import control_registers
from pi.control.plan import SLOT_S, Slot
from tests.test_control_support import LIMITS, SIM, T0, load_config, plan_doc

# Fast: a modest number of examples, and no deadline (the first example pays for imports).
# The autouse hygiene fixture (no leaked threads) holds for the whole test, not per example.
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

DEVICES = ("inverter", "load.boiler")
RAW = st.integers(min_value=0, max_value=0xFFFF)


def config(limits: Limits) -> ControlConfig:
    return ControlConfig.of(profile=SIM, address="127.0.0.1", limits=limits,
                         loads=(load_config(502),))


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    return dataclasses.replace(
        LIMITS, max_charge_w=draw(st.integers(min_value=100, max_value=5000)),
        max_discharge_w=draw(st.integers(min_value=100, max_value=5000)))


@st.composite
def baselines(draw: st.DrawFn) -> dict[str, dict[str, int]]:
    """Commissioned baselines: any raw value, including ones beyond the Pi's hard limits."""
    names = draw(st.sets(st.sampled_from(sorted(SIM.registers))))
    return {"inverter": {name: draw(RAW) for name in sorted(names)}}


SLOT = Slot(T0, T0 + timedelta(seconds=SLOT_S), "charge", 2000, 80)


@st.composite
def decisions(draw: st.DrawFn) -> d.Decision:
    """A decision, following any mode with any values (beyond what a plan may ask) or safe."""
    state = d.State(plan_id="p1", override_slot=draw(st.sampled_from([None, SLOT.start])))
    if not draw(st.booleans()):
        reason = draw(st.sampled_from([d.NO_PLAN, d.PLAN_EXPIRED, d.HARD_LIMIT, d.STOPPED]))
        return d.Decision(False, reason, "safe", state)
    mode = draw(st.sampled_from(["normal", "hold", "charge"]))
    power = st.floats(min_value=0, max_value=30000, allow_nan=False)
    values: dict[str, float | None] = {
        "power_w": draw(power if mode == "charge" else st.none() | power),
        "soc_target": draw(st.floats(min_value=0, max_value=100))}
    switch = draw(st.sampled_from(["on", "off", None]))
    return d.Decision(True, d.FOLLOWING, "slot", dataclasses.replace(state, battery_mode=mode),
                      slot=SLOT, battery_mode=mode, values=values, loads={"boiler": switch})


@st.composite
def read_backs(draw: st.DrawFn, want: dict[str, int]) -> dict[str, int]:
    """Per register: what it should be, anything else, or not read at all."""
    out: dict[str, int] = {}
    for name, raw in want.items():
        kind = draw(st.sampled_from(["same", "other", "missing"]))
        if kind != "missing":
            out[name] = raw if kind == "same" else draw(RAW)
    return out


@st.composite
def facts(draw: st.DrawFn) -> tuple[apply.Facts, ControlConfig]:
    cfg = config(draw(limits()))
    decision = draw(decisions())
    want = d.targets(decision, cfg, draw(baselines()))
    used = draw(st.integers(min_value=0, max_value=12))
    f = apply.Facts(
        decision, decision.state, want, draw(read_backs(want)),
        {name: key for name, (key, _) in control_registers(cfg).items()},
        T0 + timedelta(seconds=draw(st.integers(min_value=0, max_value=SLOT_S - 1))),
        frozenset(draw(st.sets(st.sampled_from(DEVICES)))),
        draw(st.sampled_from([None, (d.DEVICE_UNREACHABLE, "silent"), (d.DEVICE_ERROR, "ex 4")])),
        draw(st.sampled_from([None, "mode reads 2 after writing 0"])),
        used, used + draw(st.integers(min_value=-3, max_value=6)),
        draw(st.sampled_from([-5.0, 0.0, 0.5, 120.0])))
    return f, cfg


def all_read_back(f: apply.Facts) -> bool:
    return all(f.actual.get(n) == v for n, v in f.want.items())


@FAST
@given(facts())
def test_writes_only_what_differs_on_devices_that_answer(case: tuple[apply.Facts, Any]) -> None:
    f, _ = case
    step = apply.before_write(f)
    if isinstance(step, apply.Write):
        assert step.registers
        for name, raw in step.registers.items():
            assert raw == f.want[name]
            assert f.actual.get(name) != raw  # a read-back that already equals it: no write
            assert f.device_of[name] not in f.down


@FAST
@given(facts())
def test_never_writes_beyond_the_pis_hard_limits(case: tuple[apply.Facts, ControlConfig]) -> None:
    f, cfg = case
    step = apply.before_write(f)
    registers = control_registers(cfg)
    caps = {"max_charge_w": cfg.limits.max_charge_w, "max_discharge_w": cfg.limits.max_discharge_w}
    writes = step.registers if isinstance(step, apply.Write) else {}
    for name, raw in writes.items():
        reg = registers[name][1]
        if reg.limit is not None:
            assert reg.decode(raw) <= caps[reg.limit] * reg.limit_factor


@FAST
@given(facts())
def test_following_never_exceeds_the_write_budget(case: tuple[apply.Facts, Any]) -> None:
    """The safe state is written regardless: only following the plan is budgeted."""
    f, _ = case
    step = apply.before_write(f)
    if isinstance(step, apply.Write) and f.decision.follow:
        assert f.writes_used + len(step.registers) <= f.write_limit
    if isinstance(step, apply.Fallback) and step.decision.reason == d.WRITE_BUDGET:
        assert f.decision.follow
        assert step.decision.state.latch_until == apply.end_of_day(f.now)


@FAST
@given(facts())
def test_safe_state_waits_for_its_backoff(case: tuple[apply.Facts, Any]) -> None:
    f, _ = case
    step = apply.before_write(f)
    if not f.decision.follow and f.retry_in_s > 0:
        assert not isinstance(step, apply.Write)


@FAST
@given(facts())
def test_a_device_down_never_follows_the_plan(case: tuple[apply.Facts, Any]) -> None:
    f, _ = case
    outcomes = [apply.before_write(f), apply.verify(f, written=True, overridden=False)]
    for outcome in outcomes:
        if f.down:
            assert not isinstance(outcome, apply.Write) or not f.decision.follow
            assert not isinstance(outcome, apply.Settled) or outcome.mode == apply.SAFE_UNVERIFIED
        if isinstance(outcome, apply.Fallback):  # a fallback is the safe state, never a plan
            assert f.decision.follow
            assert not outcome.decision.follow
            assert outcome.decision.state.battery_mode is None


@FAST
@given(facts(), st.booleans(), st.booleans())
def test_verified_only_when_everything_reads_back(case: tuple[apply.Facts, Any], written: bool,
                                                  overridden: bool) -> None:
    f, _ = case
    outcome = apply.verify(f, written=written, overridden=overridden)
    if isinstance(outcome, apply.Settled) and outcome.mode in (apply.FOLLOWING, apply.SAFE):
        assert not f.down
        assert all_read_back(f)
        assert outcome.mode == (apply.FOLLOWING if f.decision.follow else apply.SAFE)
        assert outcome.verify_problem is None
    if not f.decision.follow:
        assert isinstance(outcome, apply.Settled)
        if f.down:
            return
        assert outcome.safe_ok == (written and all_read_back(f) and not overridden)


@FAST
@given(facts(), st.booleans())
def test_a_failed_write_gives_up_only_the_plan(case: tuple[apply.Facts, Any], written: bool) -> None:
    f, _ = case
    failed = apply.after_write(f, written)
    assert (failed is not None) == (f.decision.follow and not written)
    if failed is not None:
        assert (failed.decision.reason, failed.decision.state.latch) == (d.VERIFY_FAILED,) * 2
        assert failed.decision.state.latch_until == SLOT.end


@FAST
@given(facts(), st.booleans(), st.booleans())
def test_the_steps_are_deterministic(case: tuple[apply.Facts, Any], written: bool,
                                     overridden: bool) -> None:
    f, _ = case
    copy = dataclasses.replace(f, want=dict(f.want), actual=dict(f.actual))
    assert apply.before_write(f) == apply.before_write(copy)
    assert apply.after_write(f, written) == apply.after_write(copy, written)
    assert apply.verify(f, written=written, overridden=overridden) == \
        apply.verify(copy, written=written, overridden=overridden)


@FAST
@given(limits(), baselines(), st.integers(min_value=0, max_value=3 * SLOT_S),
       st.booleans(), st.data())
def test_a_missing_or_expired_plan_always_yields_the_safe_state(
        lim: Limits, base: dict[str, dict[str, int]], after_s: int, missing: bool,
        data: st.DataObject) -> None:
    cfg = config(lim)
    plan = None if missing else plans.validate(
        plan_doc(T0, [{"battery_mode": "charge", "power_w": 100, "soc_target": 80}]), lim,
        ("boiler",))
    now: datetime = T0 + timedelta(seconds=SLOT_S + after_s)  # the one slot is over
    telemetry = d.Telemetry(50, 0, 0)
    decision = d.decide(plan, now, telemetry, d.State(), cfg.load_names)
    assert not decision.follow
    assert decision.reason == (d.NO_PLAN if missing else d.PLAN_EXPIRED)
    want = d.targets(decision, cfg, base)
    assert want == d.targets(d.Decision(False, "any", "", d.State()), cfg, base)
    f = apply.Facts(decision, decision.state, want, data.draw(read_backs(want)),
                    {name: key for name, (key, _) in control_registers(cfg).items()}, now,
                    write_limit=0)  # no budget left: the safe state is written anyway
    step = apply.before_write(f)
    assert not isinstance(step, apply.Fallback)
    if isinstance(step, apply.Write):
        assert step.registers == {n: v for n, v in want.items() if f.actual.get(n) != v}
    else:
        assert isinstance(step, apply.Settled)
        assert (step.mode, step.reason) == (apply.SAFE, decision.reason)


def test_an_override_is_reapplied_once_per_slot_then_safe() -> None:
    following = d.Decision(True, d.FOLLOWING, "slot", d.State(plan_id="p1"), slot=SLOT,
                           battery_mode="charge")
    first = apply.override(following, following.state, ["mode"], {"mode": 2}, {"mode": 0}, T0)
    assert first.fallback is None
    assert first.what == "mode = 0 (was 2)"
    assert first.until == SLOT.end
    second = apply.override(following, first.state, ["mode"], {"mode": 2}, {"mode": 0}, T0)
    assert second.fallback is not None
    assert (second.fallback.reason, second.fallback.follow) == (d.EXTERNAL_OVERRIDE, False)
    safe = d.Decision(False, d.NO_PLAN, "none", d.State())
    restored = apply.override(safe, safe.state, ["mode"], {"mode": 0}, {"mode": 2}, T0)
    assert restored.fallback is None
    assert restored.until == apply.end_of_day(T0)


def test_changed_and_readback_due() -> None:
    want = {"mode": 2, "charge_w": 2000}
    assert apply.changed(want, None, {"mode": 0}) == []
    assert apply.changed(want, {"mode": 2, "charge_w": 2000, "x": 1},
                         {"mode": 0, "charge_w": 2000, "x": 2}) == ["mode"]
    assert apply.readback_due(want, None, 1.0, 60)
    assert apply.readback_due(want, {"mode": 2, "charge_w": 2000}, None, 60)
    assert apply.readback_due(want, {"mode": 2, "charge_w": 2000}, 60.0, 60)
    assert not apply.readback_due(want, {"mode": 2, "charge_w": 2000}, 59.9, 60)
    assert apply.readback_due(want, {"mode": 2}, 1.0, 60)
