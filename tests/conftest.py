"""Shared fixtures: hygiene."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Hygiene: a test must not leave threads running behind it."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
              and not t.daemon and t.name != "asyncio_0"]
    for t in leaked:
        t.join(timeout=2)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"threads leaked: {leaked}"
