"""The real power daemon against emulated P110s (real KLAP and AES through python-kasa): every
fault leaves a gap and a health flag, recovers, and logs quietly; kill -9 loses at most the
unflushed batch and never corrupts the database."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kasa.httpclient import HttpClient
from kasa.protocols.smartprotocol import SmartProtocol

from pi import config as pi_config
from pi.power import daemon
from pi.sim.plug import EmulatedPlug
from tests.e2e import spawn, stop
from tests.fakes.power_site import PlugSpec, power_config, wait_plug

INTERVAL_S = 0.05
TIMEOUT_S = 0.5  # generous: a loaded 2-core runner must not turn slow polls into faults
FAST = {"commit_interval_s": 0.2, "publish_interval_s": 0.05, "update_timeout_s": TIMEOUT_S,
        "max_backoff_s": 0.2}


@pytest.fixture(autouse=True)
def _quick_kasa_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-kasa's own retry pauses (1 s, 0.25 s) exceed these tests' update timeout."""
    monkeypatch.setattr(SmartProtocol, "BACKOFF_SECONDS_AFTER_TIMEOUT", 0)
    monkeypatch.setattr(HttpClient, "WAIT_BETWEEN_REQUESTS_ON_OSERROR", 0)


@pytest.fixture
async def plugs() -> AsyncIterator[dict[str, EmulatedPlug]]:
    emulated = {"nas": EmulatedPlug(power_w=30.0), "tv": EmulatedPlug(power_w=5.0, encryption="aes")}
    for plug in emulated.values():
        await plug.start()
    try:
        yield emulated
    finally:
        for plug in emulated.values():
            await plug.stop()


def site(tmp_path: Path, plugs: dict[str, EmulatedPlug]) -> Path:
    return power_config(tmp_path, [
        PlugSpec("nas", plugs["nas"].port, "klap", "host", INTERVAL_S),
        PlugSpec("tv", plugs["tv"].port, "aes", "other", INTERVAL_S)], **FAST)


@contextlib.asynccontextmanager
async def running(path: Path) -> AsyncIterator[dict[str, Any]]:
    config = pi_config.load(path)
    state: dict[str, Any] = {"ready": 0, "kicks": set(), "config": config}

    def ready() -> None:
        state["ready"] += 1

    task = asyncio.create_task(daemon.run(config, ready=ready, kick=state["kicks"].add))
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def raw_times(db: Path, plug: str) -> list[float]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return [ts / 1000 for (ts,) in con.execute(
            "SELECT ts FROM raw JOIN plugs ON plugs.id = raw.plug WHERE name = ? ORDER BY ts",
            (plug,))]


async def test_every_fault_leaves_a_gap_a_flag_and_recovers(
        tmp_path: Path, plugs: dict[str, EmulatedPlug], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pi.power")
    nas = plugs["nas"]

    async def forget() -> None:
        nas.forget_sessions()

    async def refuse() -> None:
        await nas.stop_listening()

    async def accept() -> None:
        await nas.start_listening()

    def setter(name: str, value: Any) -> Callable[[], Any]:
        async def apply() -> None:
            setattr(nas, name, value)
        return apply

    # (fault, its health, how to clear it, how long to let it repeat)
    faults = [
        (setter("hang", True), "unreachable", setter("hang", False), 0.7),
        (refuse, "unreachable", accept, 0.3),
        (setter("reject_credentials", True), "auth_failed", setter("reject_credentials", False), 0.3),
        (setter("error_code", -1301), "stale", setter("error_code", None), 0.3),
        (setter("energy", False), "stale", setter("energy", True), 0.3),
    ]
    windows: list[tuple[float, float]] = []
    async with running(site(tmp_path, plugs)) as state:
        public = state["config"].public_dir
        first = await wait_plug(public, "nas", lambda e: e["health"] == "ok")
        assert (first["live_w"], first["energy_source"], first["role"]) == (30.0, "plug", "host")
        assert state["ready"] == 1

        nas.power_w = 41.5  # a reading change shows up as the live value
        await wait_plug(public, "nas", lambda e: e["live_w"] == 41.5)
        nas.counters = False  # a plug without counters: energy is integrated
        await wait_plug(public, "nas", lambda e: e["energy_source"] == "integrated")
        nas.counters = True
        await wait_plug(public, "nas", lambda e: e["energy_source"] == "plug")

        for number, (apply, health, clear, dwell) in enumerate(faults):
            await apply()
            # "stale" also means "no reading lately": wait for the failure itself
            entry = await wait_plug(public, "nas",
                                    lambda e, h=health: e["health"] == h and e["error"] is not None)
            detected = time.time()
            assert entry["live_w"] is None, f"fault {number}: a frozen value shown as live"
            await asyncio.sleep(dwell)
            ended = time.time()
            watts = 10.0 + number
            nas.power_w = watts
            await clear()
            await wait_plug(public, "nas", lambda e, w=watts: e["health"] == "ok" and e["live_w"] == w)
            windows.append((detected, ended))
        tv = await wait_plug(public, "tv", lambda e: e["health"] == "ok")
        assert tv["live_w"] == 5.0
        assert state["kicks"] == {"power"}

    db = state["config"].private_dir / "power.sqlite3"
    nas_times, tv_times = raw_times(db, "nas"), raw_times(db, "tv")
    for lo, hi in windows:  # from detection to the fix: a gap in the failing plug's history only
        assert not [t for t in nas_times if lo <= t <= hi], (lo, hi)
        assert len([t for t in tv_times if lo <= t <= hi]) >= 3

    records = [r for r in caplog.records if r.name == "pi.power" and "plug nas" in r.getMessage()]
    episodes: list[list[logging.LogRecord]] = [[]]
    for record in records:
        episodes[-1].append(record)
        if record.levelno == logging.INFO:
            episodes.append([])
    assert episodes[-1] == []
    assert len(episodes) - 1 == len(faults)
    for episode, (_, health, _, _) in zip(episodes, faults, strict=False):
        *failures, recovery = episode
        assert recovery.levelno == logging.INFO
        assert "answers again" in recovery.getMessage()
        assert failures[0].levelno == logging.WARNING
        assert any(f"is {health}" in r.getMessage() for r in failures)
        assert any(r.levelno == logging.DEBUG for r in failures), "repeats go to DEBUG"
        for before, record in itertools.pairwise(failures):
            kind_changed = before.getMessage().split(":")[0] != record.getMessage().split(":")[0]
            assert record.levelno == (logging.WARNING if kind_changed else logging.DEBUG)


async def test_kill_9_loses_at_most_the_unflushed_batch(tmp_path: Path,
                                                        plugs: dict[str, EmulatedPlug]) -> None:
    path = site(tmp_path, plugs)
    db = pi_config.load(path).private_dir / "power.sqlite3"
    commit_s = FAST["commit_interval_s"]

    def rows() -> int:
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(db)) as con:
            return int(con.execute("SELECT count(*) FROM raw").fetchone()[0])
        return 0

    async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < end, what
            await asyncio.sleep(0.02)

    proc = spawn("pi", "run", "power", "--config", str(path), log=tmp_path / "power.log")
    try:
        await until(lambda: rows() >= 20, "the daemon never committed")
        await asyncio.sleep(0.5)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
    finally:
        stop(proc)
    served = sum(p.readings for p in plugs.values())
    recent = sum(1 for p in plugs.values() for t in p.served if t >= killed_at - commit_s - 0.25)
    stored = rows()
    assert 0 <= served - stored <= recent, (served, stored, recent)
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # each committed batch carried its aggregates: nothing half-written
        assert con.execute("SELECT sum(n) FROM minute").fetchone()[0] == stored

    before_served, before_stored = served, stored
    proc = spawn("pi", "run", "power", "--config", str(path), log=tmp_path / "power.log")
    try:
        await until(lambda: rows() >= before_stored + 20, "the restarted daemon never committed")
    finally:
        assert await asyncio.to_thread(stop, proc) == 0  # SIGTERM: a clean stop
    served = sum(p.readings for p in plugs.values()) - before_served
    stored = rows() - before_stored
    # a clean stop commits the pending batch; a poll cut short may have been answered
    assert 0 <= served - stored <= len(plugs), (served, stored)
    assert "Traceback" not in (tmp_path / "power.log").read_text()


async def test_an_unreachable_host_is_hung_or_off_by_its_plug_end_to_end(
        tmp_path: Path, plugs: dict[str, EmulatedPlug]) -> None:
    """The real power daemon reads the host's emulated plug over KLAP; the api daemon's
    controller, with the host not answering, tells "hung" (still drawing) from "off"."""
    from pi import state as sm  # noqa: PLC0415
    from pi.heartbeat import Beat  # noqa: PLC0415
    from pi.hostloop import HostController  # noqa: PLC0415
    from tests.memdns import MemoryDns  # noqa: PLC0415

    async def send_wol() -> None:
        pass

    async def probe() -> Beat:
        return Beat(ok=False, at=time.time(), error="refused")

    plugs["nas"].power_w = 36.0  # a host that froze with its fans and disks running
    path = site(tmp_path, plugs)
    async with running(path) as state:
        controller = HostController(state["config"], MemoryDns(), send_wol, probe)
        await controller.handle(sm.ComingOnline())
        for _ in range(state["config"].host.fall):
            await controller.handle(sm.HeartbeatFail("refused"))
        assert controller.status.state is sm.HostState.UNREACHABLE
        public = state["config"].public_dir
        await wait_plug(public, "nas", lambda p: p["live_w"] == 36.0)
        assert controller.document(time.time()).power["state"] == "hung"
        plugs["nas"].power_w = 0.8  # its power supply gave up
        await wait_plug(public, "nas", lambda p: p["live_w"] == 0.8)
        power = controller.document(time.time()).power
        assert (power["plug"], power["state"], power["watts"]) == ("nas", "off", 0.8)
        host_json = json.loads((public / "host.json").read_text())
        assert host_json["state"] == "unreachable"


async def test_the_first_reading_is_published_at_once_not_a_publish_period_later(
        tmp_path: Path, plugs: dict[str, EmulatedPlug]) -> None:
    """A newcomer's interval_s = 1: power.json shows the plug within ~1 s, not ~10 s."""
    path = power_config(tmp_path, [PlugSpec("nas", plugs["nas"].port, "klap", "host", 1.0)],
                        update_timeout_s=5.0, publish_interval_s=10.0)
    public = pi_config.load(path).public_dir
    async with running(path):
        started = time.monotonic()
        entry = await wait_plug(public, "nas", lambda e: e.get("live_w") == 30.0, timeout=8)
        took = time.monotonic() - started
        # the regular refresh would have come only after publish_interval_s (10 s)
        assert took < 5.0, took
        assert entry["health"] == "ok"
        # and a plug that stops answering is news too: "failing" long before 10 s
        await plugs["nas"].stop()
        failing_from = time.monotonic()
        await wait_plug(public, "nas", lambda e: e.get("health") != "ok", timeout=8)
        assert time.monotonic() - failing_from < 7.0
