"""Which Pi daemons exist: each is a module with ``async def run(config, *, ready, kick)``."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from handshake.optional import optional_module

# A daemon whose module is not installed is "not part of this version".
MODULES = {
    "api": "pi.api",
    "power": "pi.power.daemon",
    "inbox": "pi.inbox.daemon",
    "control": "pi.control.daemon",
}


def load(name: str) -> ModuleType | None:
    """The daemon's module, or None when this version does not ship it."""
    module: ModuleType | None = optional_module(MODULES[name])
    return module


def available(names: tuple[str, ...] = tuple(MODULES)) -> tuple[str, ...]:
    """Which of ``names`` this version ships, without importing them (each costs RSS)."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(MODULES[name]) is not None
        except ModuleNotFoundError:  # the parent package is missing
            found = False
        if found:
            out.append(name)
    return tuple(out)
