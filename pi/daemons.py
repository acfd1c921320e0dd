"""Which Pi daemons exist: each is a module with ``async def run(config, *, ready, kick)``."""

from __future__ import annotations

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


def available() -> tuple[str, ...]:
    return tuple(name for name in MODULES if load(name) is not None)
