"""The host plug's verdict in host.json: hung, off, drawing or unknown, never from stale data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from handshake.util.timeutil import iso
from pi import config as pi_config
from pi.config import PiConfig
from pi.power.diagnosis import host_power, verdict
from tests.fakes.power_site import PlugSpec, power_config
from tests.helpers import pi_toml

NOW = 1_780_000_000.0


@pytest.fixture
def config(tmp_path: Path) -> PiConfig:
    return pi_config.load(power_config(tmp_path, [PlugSpec("tv"), PlugSpec("nas", role="host")],
                                       hung_min_w=15, off_max_w=4))


def write(config: PiConfig, live_w: float | None, *, health: str = "ok", age_s: float = 1.0,
          interval_s: float = 10.0) -> None:
    plugs: list[dict[str, Any]] = [
        {"name": "tv", "role": "other", "health": "ok", "live_w": 80.0, "last_seen": iso(NOW)},
        {"name": "nas", "role": "host", "health": health, "live_w": live_w,
         "last_seen": iso(NOW - 2)}]
    config.public_dir.mkdir(parents=True, exist_ok=True)
    path = config.public_dir / "power.json"
    path.write_text(json.dumps({"schema": "edgepair.power/1", "generated_at": iso(NOW - age_s),
                                "interval_s": interval_s, "plugs": plugs}))
    os.utime(path, ns=(path.stat().st_mtime_ns + 1_000_000,) * 2)  # the cache sees each write


@pytest.mark.parametrize(("watts", "state", "expected"), [
    (40.0, "unreachable", "hung"),
    (15.0, "unreachable", "hung"),
    (2.5, "unreachable", "off"),
    (4.0, "unreachable", "off"),
    (9.0, "unreachable", "unknown"),  # between the thresholds: could be either
    (40.0, "online", "drawing"),
    (9.0, "waking", "drawing"),
    (1.0, "offline", "off"),
])
def test_verdicts(config: PiConfig, watts: float, state: str, expected: str) -> None:
    write(config, watts)
    assert host_power(config, state, NOW) == {"plug": "nas", "state": expected, "watts": watts,
                                              "at": iso(NOW - 2), "stale": False}


def test_a_plug_that_does_not_answer_is_unknown_not_off(config: PiConfig) -> None:
    write(config, None, health="unreachable")
    assert host_power(config, "unreachable", NOW) == {
        "plug": "nas", "state": "unknown", "watts": None, "at": iso(NOW - 2), "stale": True}


def test_a_stale_power_json_is_not_trusted(config: PiConfig) -> None:
    write(config, 40.0, age_s=31.0)  # 3 × interval_s: the power daemon stopped publishing
    result = host_power(config, "unreachable", NOW)
    assert result is not None
    assert (result["state"], result["watts"], result["stale"]) == ("unknown", None, True)
    write(config, 40.0, age_s=29.0)
    assert host_power(config, "unreachable", NOW)["state"] == "hung"  # type: ignore[index]


def test_missing_or_broken_power_json(config: PiConfig) -> None:
    assert host_power(config, "unreachable", NOW) == {
        "plug": "nas", "state": "unknown", "watts": None, "at": None, "stale": True}
    config.public_dir.mkdir(parents=True, exist_ok=True)
    (config.public_dir / "power.json").write_text("{not json")
    assert host_power(config, "unreachable", NOW)["stale"] is True  # type: ignore[index]


def test_none_without_power_or_a_host_plug(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert host_power(pi_config.load(pi_toml(tmp_path / "a")), "unreachable", NOW) is None
    other = pi_config.load(power_config(tmp_path / "b", [PlugSpec("tv")]))
    assert host_power(other, "unreachable", NOW) is None


def test_verdict_is_pure() -> None:
    assert verdict(None, "unreachable", hung_min_w=15, off_max_w=4) == "unknown"
    assert verdict(0.0, "online", hung_min_w=15, off_max_w=4) == "off"


def test_host_json_carries_the_verdict(config: PiConfig) -> None:
    """The api daemon's controller puts host_power() into host.json as "power"."""
    from pi.heartbeat import Beat  # noqa: PLC0415
    from pi.hostloop import HostController  # noqa: PLC0415
    from tests.memdns import MemoryDns  # noqa: PLC0415

    async def send_wol() -> None:
        pass

    async def probe() -> Beat:
        raise AssertionError("not polled here")

    write(config, 40.0)
    controller = HostController(config, MemoryDns(), send_wol, probe, clock=lambda: NOW)
    assert controller.document(NOW).power == {
        "plug": "nas", "state": "drawing", "watts": 40.0, "at": iso(NOW - 2), "stale": False}
