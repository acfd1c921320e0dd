"""The usage ledger: batched commits (counted by sqlite's own trace), restart, retention."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC
from pathlib import Path
from typing import Any

import msgspec
import pytest

from handshake import documents
from handshake.documents import UsageDocument
from pi import state as sm
from pi.config import load
from pi.hostloop import HostController
from pi.power.history import History, Sample
from pi.usage.ledger import DAY_MS, Interval, Ledger, Wake
from pi.usage.service import UsageService
from tests.helpers import pi_toml
from tests.memdns import MemoryDns

T0 = 1_780_000_000.0  # a fixed start; the clock is injected


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def trace_commits(ledger: Ledger) -> list[str]:
    """Every COMMIT sqlite executes on the ledger's connection (implicit writes too)."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        verb = sql.strip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb in ("COMMIT", "INSERT", "UPDATE", "DELETE"):
            seen.append(verb)

    ledger.db.set_trace_callback(trace)
    return seen


def rows(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return (db.execute("SELECT start_ms, end_ms, state FROM intervals ORDER BY start_ms").fetchall(),
                db.execute("SELECT at_ms, reason, client FROM wakes ORDER BY at_ms").fetchall())


def test_records_wait_in_memory_and_commit_at_most_once_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "usage.sqlite3", commit_interval_s=60, clock=clock)
    ledger.open("offline", T0)
    seen = trace_commits(ledger)
    commits = 0
    # Ten simulated minutes with a state change or a wake every 5 s, checked every 5 s.
    for i in range(120):
        clock.now = T0 + 5 * (i + 1)
        if i % 2:
            ledger.wake(clock.now, "demand:dns", "192.168.1.50")
        else:
            ledger.transition("waking" if i % 4 == 0 else "online", clock.now)
        if ledger.due(clock.now):
            assert ledger.commit(clock.now)
            commits += 1
    assert commits == ledger.commits == 10
    assert seen.count("COMMIT") == 10
    assert ledger.view(T0).wakes.count(Wake(round((T0 + 10) * 1000), "demand:dns",
                                            "192.168.1.50")) == 1
    stored_intervals, stored_wakes = rows(ledger.path)
    assert len(stored_wakes) == 60
    assert stored_intervals[-1][1] is None  # the interval in progress is stored open
    assert not ledger.due(clock.now + 59)  # nothing waits after the last commit…
    ledger.wake(clock.now + 1, "api", None)
    assert not ledger.due(clock.now + 59)  # …and a new record waits for the minute
    assert ledger.due(clock.now + 60)
    ledger.close()


def test_nothing_to_write_is_no_commit(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "usage.sqlite3", clock=clock)
    ledger.open("offline", T0)
    seen = trace_commits(ledger)
    assert ledger.commit(T0 + 61)  # the opened interval
    assert not ledger.commit(T0 + 200)
    assert not ledger.due(T0 + 1000)
    ledger.transition("offline", T0 + 300)  # the same state: no new interval
    assert not ledger.due(T0 + 1000)
    assert seen.count("COMMIT") == 1
    ledger.close()


def test_view_merges_stored_and_pending_without_doubles(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.sqlite3", clock=Clock())
    ledger.open("offline", T0)
    ledger.transition("waking", T0 + 10)
    ledger.wake(T0 + 10, "api", None)
    ledger.commit(T0 + 61)
    ledger.transition("online", T0 + 100)
    ledger.wake(T0 + 120, "schedule", None)
    view = ledger.view(T0 - 1)
    assert [(i.state, i.end_ms) for i in view.intervals] == [
        ("offline", round((T0 + 10) * 1000)), ("waking", round((T0 + 100) * 1000)),
        ("online", None)]
    assert [w.reason for w in view.wakes] == ["api", "schedule"]
    ledger.close()


def test_a_crash_loses_at_most_the_pending_minute_and_restart_closes_the_open_interval(
        tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    ledger = Ledger(path, clock=Clock())
    ledger.open("offline", T0)
    ledger.transition("waking", T0 + 10)
    ledger.commit(T0 + 60)
    ledger.transition("online", T0 + 70)  # pending: lost with the crash below
    ledger.wake(T0 + 80, "api", None)
    ledger.db.close()  # a crash: the connection dies with the memory, nothing more is written

    # The controller restored "online since T0 + 70" from host-state.json.
    again = Ledger(path, clock=Clock(T0 + 500))
    again.open("online", T0 + 70)
    again.commit(T0 + 561)
    intervals, wakes = rows(path)
    t = round(T0 * 1000)
    assert intervals == [(t, t + 10_000, "offline"), (t + 10_000, t + 70_000, "waking"),
                         (t + 70_000, None, "online")]
    assert wakes == []  # the wake 20 s before the crash was within the uncommitted minute
    again.close()


def test_a_clean_restart_in_the_same_state_keeps_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    ledger = Ledger(path, clock=Clock())
    ledger.open("offline", T0)
    ledger.commit(T0 + 60)
    ledger.close()
    again = Ledger(path, clock=Clock(T0 + 3600))
    again.open("offline", T0)
    assert again.view(T0).intervals == [Interval(round(T0 * 1000), None, "offline")]
    assert not again.due(T0 + 7200)
    again.close()


def test_two_open_rows_after_repeated_crashes_are_both_closed(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    t = round(T0 * 1000)
    ledger = Ledger(path, clock=Clock())
    ledger.open("offline", T0)
    ledger.commit(T0 + 60)
    ledger.close()
    with sqlite3.connect(path) as db:  # what two crashes in a row could leave
        db.execute("INSERT INTO intervals VALUES (?, NULL, 'waking')", (t + 5000,))
    again = Ledger(path, clock=Clock(T0 + 100))
    again.open("online", T0 + 50)
    again.commit(T0 + 100)
    intervals, _ = rows(path)
    assert intervals == [(t, t + 5000, "offline"), (t + 5000, t + 50_000, "waking"),
                         (t + 50_000, None, "online")]
    again.close()


def test_retention_drops_what_is_older_than_retention_days(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    clock = Clock()
    ledger = Ledger(path, retention_days=31, clock=clock)
    ledger.open("offline", T0)
    for day in range(40):  # one wake and one online hour a day for 40 days
        at = T0 + day * 86400 + 3600
        ledger.transition("waking", at)
        ledger.wake(at, "schedule", None)
        ledger.transition("online", at + 60)
        ledger.transition("offline", at + 3660)
        ledger.commit(at + 7200)
    intervals, wakes = rows(path)
    cutoff = round((T0 + 39 * 86400 + 10800) * 1000) - 31 * DAY_MS  # the last commit's
    assert len(wakes) == 31  # days 9 … 39: day 8's wake is 2 h older than the cutoff
    assert len(intervals) == 1 + 31 * 3  # the offline interval the cutoff falls into stays
    assert all(at >= cutoff for at, _, _ in wakes)
    assert all(end is None or end >= cutoff for _, end, _ in intervals)
    assert intervals[-1][2] == "offline"
    assert intervals[-1][1] is None
    ledger.close()


def test_a_broken_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    ledger = Ledger(path, clock=Clock())
    ledger.open("offline", T0)
    assert list(tmp_path.glob("usage.sqlite3.broken-*"))
    assert ledger.commit(T0 + 60)
    ledger.close()


async def test_the_service_hears_the_controller_and_flushes_on_a_clean_stop(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    config = msgspec.structs.replace(
        config, usage=msgspec.structs.replace(config.usage, publish_interval_s=3600,
                                              commit_interval_s=3600))
    usage = UsageService(config)
    wols: list[float] = []

    async def send_wol() -> None:
        wols.append(1)

    async def probe() -> Any:
        raise AssertionError("no heartbeats here")

    controller = HostController(config, MemoryDns(), send_wol, probe, observers=[usage])
    assert usage.open(controller.status)
    task = asyncio.create_task(usage.run())
    try:
        await asyncio.sleep(0.05)
        first = usage.published
        await controller.handle(sm.WakeRequested("dashboard", client=None))
        for _ in range(200):  # published at once on the wake, not after the hour
            if usage.published > first:
                break
            await asyncio.sleep(0.01)
        document = documents.read(config.public_dir / "usage.json", UsageDocument)
        assert document is not None
        assert [(w.reason, w.client) for w in document.recent_wakes] == [("button", None)]
        assert document.days[-1].wakes["button"] == 1
        assert usage.ledger.commits == 0  # the hour-long commit interval holds
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert wols == [1]
    _, wakes = rows(config.private_dir / "usage.sqlite3")
    assert [w[1] for w in wakes] == ["button"]  # the clean stop committed it


def test_the_host_plug_energy_comes_from_the_power_history_read_only(tmp_path: Path) -> None:
    """kWh per day and the online draw from power.sqlite3; without it, nulls, not a crash."""
    config = load(pi_toml(tmp_path, extra="""
[schedule]
timezone = "UTC"
[[power.plugs]]
name = "nas"
address = "127.0.0.1"
role = "host"
[[power.plugs]]
name = "router"
address = "127.0.0.1"
"""))
    day0 = 1_780_012_800.0  # a UTC midnight
    clock = Clock(day0 + 86400 + 6 * 3600)  # 06:00 the next day
    usage = UsageService(config, clock=clock)
    assert usage.open(sm.HostStatus(state=sm.HostState.OFFLINE, since=day0))
    assert usage.document(clock.now).host_plug == "nas"
    assert usage.document(clock.now).days[-1].host_kwh is None  # no power history at all
    # The host was online 08:00-10:00 on day 0 at 40 W, asleep at 2 W otherwise.
    usage.state_changed(usage_status("offline", day0), usage_status("online", day0 + 8 * 3600),
                        day0 + 8 * 3600)
    usage.state_changed(usage_status("online", day0), usage_status("offline", day0 + 10 * 3600),
                        day0 + 10 * 3600)
    history = History(config.private_dir / "power.sqlite3", tz=UTC)
    history.open()
    samples = []
    for minute in range(int((clock.now - day0) // 60)):
        ts = day0 + minute * 60 + 30  # mid-minute, like the plugs' 5 s samples
        watts = 40 if 8 * 60 <= minute < 10 * 60 else 2
        samples.append(Sample("nas", round(ts * 1000), watts * 1000, 60_000))
        samples.append(Sample("router", round(ts * 1000), 7000, 60_000))
    history.commit(samples, clock.now)
    history.close()
    document = usage.document(clock.now)
    assert document.online_draw_w == 40.0  # only the online minutes, only the host plug
    first, second = document.days[-2], document.days[-1]
    # day 0: 2 h × 40 W + 22 h × 2 W = 0.124 kWh; always on: 40 W × 24 h = 0.96 kWh
    assert (first.hours_online, first.host_kwh, first.saved_kwh) == (2.0, 0.124, 0.836)
    assert (second.host_kwh, second.saved_kwh) == (0.012, 0.228)  # 6 h so far
    assert (first.saved_money, document.price_per_kwh) == (None, None)
    usage.ledger.close()


def usage_status(state: str, since: float) -> sm.HostStatus:
    return sm.HostStatus(state=sm.HostState(state), since=since)
