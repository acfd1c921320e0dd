"""The energy plan on the Pi: ``handshake.plan`` checked against this Pi's hard limits and loads.

The document, its slot length and its validation are the contract in ``handshake.plan``;
here the accepted plan's file and the Pi's own types.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeAlias

from handshake import plan as contract
from handshake.errors import ValidationError
from handshake.plan import (
    BATTERY_MODES,
    LIMIT_KEYS,
    MAX_HORIZON_S,
    MAX_ID_LEN,
    OPTIMIZER_STATUSES,
    SCHEMA,
    SLOT_S,
    Slot,
)
from pi.control.config import Limits
from pi.control.profile import Profile

__all__ = ["BATTERY_MODES", "LIMIT_KEYS", "MAX_HORIZON_S", "MAX_ID_LEN", "OPTIMIZER_STATUSES",
           "PLAN_FILE", "SCHEMA", "SLOT_S", "Plan", "Slot", "validate"]

# The accepted plan under state_dir/private/: written by the api daemon, read by control.
PLAN_FILE = "plan.json"

Plan: TypeAlias = contract.Plan[Limits]


def validate(doc: Any, limits: Limits, loads: Collection[str],
             now: datetime | None = None, profile: Profile | None = None) -> Plan:
    """Check a plan against this Pi's limits, loads and (given) inverter profile: a mode or
    an export cap the profile cannot carry out is refused; ValidationError names the field."""
    plan = contract.validate(doc, limits, loads, now)
    if profile is not None:
        for i, slot in enumerate(plan.slots):
            supported(profile, slot, f"slots[{i}]")
    return plan


def supported(profile: Profile, slot: Slot, path: str) -> None:
    """ValidationError when ``profile`` has no way to carry out ``slot``."""
    if slot.battery_mode not in profile.modes:
        raise ValidationError(f"the inverter profile {profile.name} has no {slot.battery_mode} "
                              f"mode (it has {', '.join(profile.modes)})", f"{path}.battery_mode")
    if slot.export_cap_w is not None and not profile.takes(slot.battery_mode, "export_cap_w"):
        raise ValidationError(f"the inverter profile {profile.name} cannot cap the feed-in in "
                              f"{slot.battery_mode} slots", f"{path}.export_cap_w")
