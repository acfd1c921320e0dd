"""The energy plan on the Pi: ``handshake.plan`` checked against this Pi's hard limits and loads.

The document, its slot length and its validation are the contract in ``handshake.plan``;
here the accepted plan's file and the Pi's own types.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeAlias

from handshake import plan as contract
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

__all__ = ["BATTERY_MODES", "LIMIT_KEYS", "MAX_HORIZON_S", "MAX_ID_LEN", "OPTIMIZER_STATUSES",
           "PLAN_FILE", "SCHEMA", "SLOT_S", "Plan", "Slot", "validate"]

# The accepted plan under state_dir/private/: written by the api daemon, read by control.
PLAN_FILE = "plan.json"

Plan: TypeAlias = contract.Plan[Limits]


def validate(doc: Any, limits: Limits, loads: Collection[str],
             now: datetime | None = None) -> Plan:
    """Check a plan against this Pi's limits and loads; ValidationError names the field."""
    return contract.validate(doc, limits, loads, now)
