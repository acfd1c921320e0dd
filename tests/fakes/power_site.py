"""Power test helpers: a Pi config with plugs, a settable clock, a scripted plug link."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pi.power.health import PlugError, Reading
from tests.helpers import pi_toml, write_secrets

TAPO_USER = "user@example.com"
TAPO_PASSWORD = "demo-password"  # the emulator's default account


@dataclass(frozen=True)
class PlugSpec:
    name: str
    port: int = 9
    encryption: str = "klap"
    role: str = "other"
    interval_s: float = 0.05


def power_config(tmp: Path, plugs: list[PlugSpec], *, credentials: bool = True,
                 timezone: str | None = "UTC", **power: Any) -> Path:
    """A loopback Pi config with ``[power]`` and its secrets (Tapo account included)."""
    keys = "\n".join(f"{k} = {json.dumps(v)}" for k, v in power.items())
    tables = "\n".join(f"""
[[power.plugs]]
name = "{p.name}"
address = "127.0.0.1"
port = {p.port}
encryption = "{p.encryption}"
role = "{p.role}"
interval_s = {p.interval_s}
""" for p in plugs)
    schedule = f'[schedule]\ntimezone = "{timezone}"\n' if timezone else ""
    path = pi_toml(tmp, extra=f"{schedule}\n[power]\n{keys}\n{tables}")
    extra = f'tapo_username = "{TAPO_USER}"\ntapo_password = "{TAPO_PASSWORD}"\n' if credentials else ""
    write_secrets(tmp / "secrets.toml", extra=extra)
    return path


class Clock:
    """An injected wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedLink:
    """A PlugLink that answers from a script: a Reading at the clock's time, or a PlugError."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.script: deque[tuple[float, int | None, int | None] | PlugError] = deque()
        self.closed = 0

    def next(self, w: float, today_wh: int | None = None, month_wh: int | None = None) -> None:
        self.script.append((w, today_wh, month_wh))

    def fail(self, kind: str, message: str = "scripted failure") -> None:
        self.script.append(PlugError(kind, message))

    async def read(self) -> Reading:
        item = self.script.popleft()
        if isinstance(item, PlugError):
            raise item
        w, today, month = item
        return Reading(at=self.clock(), w=w, today_wh=today, month_wh=month)

    async def close(self) -> None:
        self.closed += 1


def read_power(public_dir: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((public_dir / "power.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc


def plug_entry(public_dir: Path, name: str) -> dict[str, Any] | None:
    doc = read_power(public_dir)
    if doc is None:
        return None
    return next((p for p in doc["plugs"] if p["name"] == name), None)


async def wait_plug(public_dir: Path, name: str, predicate: Callable[[dict[str, Any]], bool],
                    timeout: float = 5.0) -> dict[str, Any]:
    """Wait until power.json's entry for ``name`` satisfies ``predicate``."""
    end = time.monotonic() + timeout
    entry = None
    while time.monotonic() < end:
        entry = plug_entry(public_dir, name)
        if entry is not None and predicate(entry):
            return entry
        await asyncio.sleep(0.02)
    raise AssertionError(f"power.json entry for {name} never matched; last: "
                         f"{ {k: v for k, v in (entry or {}).items() if k != 'series_24h'} }")
