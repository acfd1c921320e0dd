"""Optional feature modules: a later feature's module may not be part of this version."""

from __future__ import annotations

import importlib
from typing import Any


def optional_module(name: str) -> Any:
    """Import ``name``; None when it (or its package) is not shipped. Other errors propagate."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise
