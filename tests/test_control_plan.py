"""Plan validation: every rule, with the field it names."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from handshake.errors import ValidationError
from handshake.util.timeutil import iso
from pi.control import plan as plans
from tests.test_control_support import LIMITS, T0, plan_doc

LOADS = ("boiler",)


def broken(change: Any) -> dict[str, Any]:
    doc = plan_doc(slots=[{"battery_mode": "charge", "power_w": 2000, "soc_target": 80,
                           "loads": {"boiler": True}}, {"battery_mode": "normal"}])
    change(doc)
    return doc


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return change


_DELETE = object()


@pytest.mark.parametrize(("change", "field", "text"), [
    (_set("extra", 1), "extra", "unknown field"),
    (_set("schema", "edgepair.plan/2"), "schema", "edgepair.plan/1"),
    (_set("id", ""), "id", "printable string"),
    (_set("seq", -1), "seq", "non-negative integer"),
    (_set("seq", True), "seq", "non-negative integer"),
    (_set("slot_s", 600), "slot_s", "expected 900"),
    (_set("generated_at", "2030-06-01T12:00:00"), "generated_at", "time zone"),
    (_set("valid_from", iso(T0 + timedelta(minutes=7))), "valid_from", "slot boundary"),
    (_set("valid_until", iso(T0 + timedelta(minutes=40))), "valid_until", "whole number of slots"),
    (_set("valid_until", iso(T0 - timedelta(minutes=15))), "valid_until", "whole number of slots"),
    (_set("valid_until", iso(T0 + timedelta(hours=49))), "valid_until", "48 h"),
    (_set("slots", []), "slots", "expected 2 slots"),
    (_set("slots.1.start", iso(T0)), "slots[1].start", "contiguous"),
    (_set("slots.1.battery_mode", "boost"), "slots[1].battery_mode",
     "normal, hold, charge, discharge, limit_export"),
    (_set("slots.1.battery_mode", "discharge"), "slots[1].power_w", "required for a discharge slot"),
    (_set("slots.1.battery_mode", "limit_export"), "slots[1].export_cap_w",
     "required for a limit_export slot"),
    (_set("slots.1.export_cap_w", 0), "slots[1].export_cap_w", "a capped normal slot is limit_export"),
    (_set("slots.0.export_cap_w", -1), "slots[0].export_cap_w", "hard limits"),
    (_set("slots.0.export_cap_w", 0), None, None),  # valid: charging without feed-in
    (_set("slots.0.power_w", None), "slots[0].power_w", "required for a charge slot"),
    (_set("slots.0.soc_target", _DELETE), "slots[0].soc_target", "required for a charge slot"),
    (_set("slots.0.power_w", 4500), "slots[0].power_w", "hard limits"),
    (_set("slots.0.power_w", "2000"), "slots[0].power_w", "expected a number"),
    (_set("slots.0.soc_target", 99), "slots[0].soc_target", "hard limits"),
    (_set("slots.0.soc_target", 5), "slots[0].soc_target", "hard limits"),
    (_set("slots.1.battery_mode", "hold"), None, None),  # valid: no power in a hold slot
    (_set("slots.0.loads", {"heater": True}), "slots[0].loads.heater", "configured on the Pi: boiler"),
    (_set("slots.0.loads", {"boiler": 1}), "slots[0].loads.boiler", "true or false"),
    (_set("slots.0.bonus", 1), "slots[0].bonus", "unknown field"),
    (_set("limits", {"max_charge_w": 5000}), "limits.max_charge_w", "hard limits"),
    (_set("limits", {"soc_min_pct": 5}), "limits.soc_min_pct", "hard limits"),
    (_set("limits", {"soc_max_pct": 99}), "limits.soc_max_pct", "hard limits"),
    (_set("limits", {"frequency": 50}), "limits.frequency", "unknown limit"),
    (_set("limits", {"max_charge_w": 1000}), "slots[0].power_w", "0 ≤ value ≤ 1000"),
    (_set("optimizer", {}), "optimizer.status", "status"),
])
def test_invalid_plans_name_the_field(change: Any, field: str | None, text: str | None) -> None:
    doc = broken(change)
    if field is None:
        plans.validate(doc, LIMITS, LOADS)
        return
    with pytest.raises(ValidationError) as info:
        plans.validate(doc, LIMITS, LOADS)
    assert info.value.field == field
    assert text in str(info.value)


@pytest.mark.parametrize("doc", [None, [], "plan", 3])
def test_not_an_object(doc: Any) -> None:
    with pytest.raises(ValidationError, match="expected a JSON object"):
        plans.validate(doc, LIMITS, LOADS)


def test_an_expired_plan_is_refused_only_when_now_is_given() -> None:
    doc = plan_doc()
    plans.validate(doc, LIMITS, LOADS)
    with pytest.raises(ValidationError) as info:
        plans.validate(doc, LIMITS, LOADS, now=T0 + timedelta(hours=1))
    assert info.value.field == "valid_until"
    with pytest.raises(ValidationError) as info:
        plans.validate(doc, LIMITS, LOADS, now=T0 - timedelta(hours=49))
    assert info.value.field == "valid_from"


def test_a_plan_can_only_tighten_the_limits() -> None:
    doc = plan_doc(limits={"max_charge_w": 3000, "soc_min_pct": 20, "soc_max_pct": 90})
    plan = plans.validate(doc, LIMITS, LOADS)
    assert (plan.limits.max_charge_w, plan.limits.soc_min_pct, plan.limits.soc_max_pct) == (3000, 20, 90)
    assert plan.limits.max_discharge_w == LIMITS.max_discharge_w
    inverted = plan_doc(limits={"soc_min_pct": 60, "soc_max_pct": 50})
    with pytest.raises(ValidationError, match="above soc_max_pct"):
        plans.validate(inverted, LIMITS, LOADS)


def test_slots_and_summary() -> None:
    plan = plans.validate(plan_doc(slots=[{"battery_mode": "hold"}, {"battery_mode": "normal",
                                                                      "power_w": 1500}]),
                          LIMITS, LOADS)
    assert plan.slot_at(T0 - timedelta(seconds=1)) is None
    assert plan.slot_at(T0).battery_mode == "hold"  # type: ignore[union-attr]
    second = plan.slot_at(T0 + timedelta(minutes=29, seconds=59))
    assert second is not None
    assert second.battery_mode == "normal"
    assert second.power_w == 1500
    assert plan.slot_at(T0 + timedelta(minutes=30)) is None
    assert plan.summary(T0 - timedelta(minutes=1))["status"] == "pending"
    assert plan.summary(T0)["status"] == "active"
    assert plan.summary(T0 + timedelta(hours=1)) == {
        "id": "p1", "seq": 1, "valid_until": iso(T0 + timedelta(minutes=30)), "status": "expired",
        "optimizer": "optimal", "savings_eur": None, "reason": None}


def test_48_hours_of_slots_is_the_most() -> None:
    doc = plan_doc(slots=[{"battery_mode": "normal"}] * (48 * 4))
    assert len(plans.validate(doc, LIMITS, LOADS).slots) == 192
    more = copy.deepcopy(plan_doc(slots=[{"battery_mode": "normal"}] * (48 * 4 + 1)))
    with pytest.raises(ValidationError, match="48 h"):
        plans.validate(more, LIMITS, LOADS)
