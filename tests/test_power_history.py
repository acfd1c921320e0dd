"""History and power.json with an injected clock: a scripted sequence of readings gives exact
24 h series and daily totals; aggregates survive outages; a failing database loses nothing."""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handshake.errors import FatalError, TemporaryError
from handshake.util.timeutil import iso
from pi import config as pi_config
from pi.power import history as history_module
from pi.power.config import PlugConfig, PowerConfig
from pi.power.health import PlugError, PlugStatus, Reading
from pi.power.history import History, Pending, Sample
from pi.power.service import PowerService
from tests.fakes.power_site import Clock, PlugSpec, ScriptedLink, power_config, read_power

T0 = datetime(2026, 3, 9, 23, 50, tzinfo=UTC).timestamp()  # ten minutes before midnight
INTERVAL = 10.0


@dataclass
class Expected:
    """What power.json must say, computed here from the script alone (not with History)."""

    interval_ms: int
    max_gap_ms: int
    last: int | None = None

    def __post_init__(self) -> None:
        self.minutes: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self.days: dict[str, int] = defaultdict(int)
        self.counter: dict[str, int] = {}

    def sample(self, t: float, w: float, today_wh: int | None) -> None:
        ts, mw = round(t * 1000), round(w * 1000)
        gap = None if self.last is None else ts - self.last
        dt = gap if gap is not None and gap <= self.max_gap_ms else self.interval_ms
        self.last = ts
        self.minutes[ts // 60_000][0] += mw * dt
        self.minutes[ts // 60_000][1] += dt
        day = datetime.fromtimestamp(t, UTC).date().isoformat()
        self.days[day] += mw * dt
        if today_wh is not None:
            self.counter[day] = today_wh

    def series(self, now: float) -> list[float | None]:
        last = int(now // 60)
        return [None if m not in self.minutes else round(self.minutes[m][0] / self.minutes[m][1] / 1000, 3)
                for m in range(last - 1439, last + 1)]

    def daily(self, now: float) -> list[dict[str, Any]]:
        today = datetime.fromtimestamp(now, UTC).date()
        out = []
        for i in range(29, -1, -1):
            day = (today - timedelta(days=i)).isoformat()
            kwh = (self.counter[day] / 1000 if day in self.counter
                   else round(self.days[day] / 3.6e12, 6) if day in self.days else None)
            out.append({"date": day, "kwh": kwh})
        return out


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[PowerService, Clock, dict[str, ScriptedLink]]]:
    config = pi_config.load(power_config(tmp_path, [
        PlugSpec("nas", role="host", interval_s=INTERVAL), PlugSpec("tv", interval_s=INTERVAL)]))
    power = config.power
    assert isinstance(power, PowerConfig)
    clock = Clock(T0)
    links = {"nas": ScriptedLink(clock), "tv": ScriptedLink(clock)}
    service = PowerService(config, power, dict(links), clock=clock)
    await service.open()
    try:
        yield service, clock, links
    finally:
        await service.close()


async def test_series_and_daily_totals_are_exact(
        site: tuple[PowerService, Clock, dict[str, ScriptedLink]]) -> None:
    service, clock, links = site
    nas = Expected(10_000, 25_000)
    tv = Expected(10_000, 25_000)
    for k in range(120):  # 20 minutes across midnight, a poll every 10 s
        clock.now = T0 + 10 * k
        if 30 <= k < 60:  # five minutes where the nas plug does not answer: a gap
            links["nas"].fail("unreachable")
        else:
            w = 40 + (k % 6) * 10.5
            today = 1000 + k if k < 60 else k - 60  # the plug's counter resets at its midnight
            links["nas"].next(w, today, 5000 + k)
            nas.sample(clock.now, w, today)
        await service.poll("nas")
        clock.now += 3  # the tv plug is polled 3 s later, has no counters, varies slowly
        links["tv"].next(5.0 + k / 100)
        tv.sample(clock.now, 5.0 + k / 100, None)
        await service.poll("tv")
        if k % 4 == 1:  # batches that split minutes; the last two polls stay pending
            await service.flush()

    clock.now = T0 + 1200 + 1  # 2026-03-10 00:10:01
    assert len(service.pending.samples) == 4
    await service.publish()  # the last samples still pending
    pending_doc = read_power(service.config.public_dir)
    await service.flush()
    await service.publish()
    doc = read_power(service.config.public_dir)
    assert doc is not None
    assert doc == pending_doc  # pending samples count exactly like committed ones
    assert (doc["schema"], doc["generated_at"], doc["interval_s"]) == (
        "edgepair.power/1", "2026-03-10T00:10:01.000Z", 10.0)
    entries = {p["name"]: p for p in doc["plugs"]}

    start = iso((int(clock.now // 60) - 1439) * 60)
    assert entries["nas"]["series_24h"] == {"start": start, "step_s": 60, "w": nas.series(clock.now)}
    assert entries["tv"]["series_24h"] == {"start": start, "step_s": 60, "w": tv.series(clock.now)}
    assert entries["nas"]["daily_kwh"] == nas.daily(clock.now)
    assert entries["tv"]["daily_kwh"] == tv.daily(clock.now)
    series = entries["nas"]["series_24h"]["w"]
    assert series[-16:-11] == [None] * 5  # the gap shows as a gap
    assert series[-19] == round(40 + 10.5 * 2.5, 3)  # a full minute: mean of the six readings

    assert {k: entries["nas"][k] for k in ("health", "live_w", "today_kwh", "month_kwh",
                                            "energy_source", "last_seen", "role")} == {
        "health": "ok", "live_w": 40 + 5 * 10.5, "today_kwh": 0.059, "month_kwh": 5.119,
        "energy_source": "plug", "last_seen": iso(T0 + 1190), "role": "host"}
    today_e, all_e = tv.days["2026-03-10"], sum(tv.days.values())
    assert {k: entries["tv"][k] for k in ("today_kwh", "month_kwh", "energy_source")} == {
        "today_kwh": round(today_e / 3.6e12, 6), "month_kwh": round(all_e / 3.6e12, 6),
        "energy_source": "integrated"}
    assert service.commits == 31


async def test_live_value_goes_stale_and_a_failure_is_flagged(
        site: tuple[PowerService, Clock, dict[str, ScriptedLink]]) -> None:
    service, clock, links = site
    links["nas"].next(30.0)
    await service.poll("nas")
    clock.now += 2.5 * INTERVAL + 0.001  # no poll since: the reading is no longer live
    await service.publish()
    nas = read_power(service.config.public_dir)["plugs"][0]  # type: ignore[index]
    assert (nas["health"], nas["live_w"], nas["last_seen"]) == ("stale", None, iso(T0))
    links["nas"].fail("auth_failed", "the plug refused the Tapo account")
    await service.poll("nas")
    await service.publish()
    nas = read_power(service.config.public_dir)["plugs"][0]  # type: ignore[index]
    assert (nas["health"], nas["live_w"], nas["error"]) == (
        "auth_failed", None, "the plug refused the Tapo account")
    assert nas["today_kwh"] is not None  # what was measured stays; only live values go


@pytest.mark.parametrize(("w", "today_wh", "why"), [
    (float("nan"), None, "implausible power reading nan W"),
    (float("inf"), None, "implausible power reading inf W"),
    (1e16, None, "implausible power reading"),
    (-5.0, None, "implausible power reading -5.0 W"),
    (30.0, 10**17, "implausible today counter"),
])
async def test_an_implausible_reading_is_stale_never_stored_or_shown(
        site: tuple[PowerService, Clock, dict[str, ScriptedLink]], w: float,
        today_wh: int | None, why: str) -> None:
    service, clock, links = site
    links["nas"].next(w, today_wh)
    await service.poll("nas")
    await service.flush()
    await service.publish()  # NaN would make json.dumps (allow_nan=False) raise here
    nas = read_power(service.config.public_dir)["plugs"][0]  # type: ignore[index]
    assert (nas["health"], nas["live_w"]) == ("stale", None)
    assert why in nas["error"]
    assert service.history.last_ts == {}  # nothing stored
    links["nas"].next(30.0)  # the next sane reading counts again
    clock.now += INTERVAL
    await service.poll("nas")
    await service.publish()
    nas = read_power(service.config.public_dir)["plugs"][0]  # type: ignore[index]
    assert (nas["health"], nas["live_w"]) == ("ok", 30.0)


async def test_a_failing_database_keeps_the_batch_and_logs_quietly(
        site: tuple[PowerService, Clock, dict[str, ScriptedLink]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    service, clock, links = site
    caplog.set_level(logging.DEBUG, logger="pi.power")
    real_commit = service.history.commit
    broken = [True]

    def commit(samples: list[Sample], now: float) -> int:
        if broken[0]:
            raise sqlite3.OperationalError("disk I/O error")
        return real_commit(samples, now)

    monkeypatch.setattr(service.history, "commit", commit)
    for k in range(3):
        clock.now = T0 + 10 * k
        links["nas"].next(20.0)
        await service.poll("nas")
        await service.flush()
    broken[0] = False
    await service.flush()
    rows = await service._db(service.history.minutes, 0, 10**9, "nas")
    assert sum(r.n for r in rows) == 3
    levels = [(r.levelname, r.getMessage()[:30]) for r in caplog.records if r.name == "pi.power"]
    assert levels == [("WARNING", "cannot write the power history"),
                      ("DEBUG", "cannot write the power history"),
                      ("DEBUG", "cannot write the power history"),
                      ("INFO", "the power history is writable ")]


def test_aggregates_survive_an_outage_longer_than_raw_retention(tmp_path: Path) -> None:
    history = History(tmp_path / "p.sqlite3", tz=UTC, raw_retention_days=14,
                      minute_retention_days=30)
    history.open()
    pending = Pending(history.last_ts)
    for k in range(30):
        pending.add("nas", T0 + 10 * k, 50.0, 100 + k, 900 + k, interval_s=10, max_gap_s=25)
    history.commit(pending.take(), T0 + 300)
    history.close()

    later = T0 + 20 * 86400  # the daemon was down for 20 days
    history.open()  # a restart: the last sample time comes back from the database
    pending = Pending(history.last_ts)
    sample = pending.add("nas", later, 60.0, 5, 10, interval_s=10, max_gap_s=25)
    assert sample is not None
    assert sample.dt == 10_000  # the outage is a gap, not energy
    history.commit(pending.take(), later + 10)
    days = history.days(date(2026, 3, 1), date(2026, 4, 30), "nas")
    assert [(d.day, d.n, d.e, d.plug_wh) for d in days] == [
        ("2026-03-09", 30, 30 * 50_000 * 10_000, 129),
        ("2026-03-29", 1, 60_000 * 10_000, 5)]
    assert len(history.minutes(0, 10**9, "nas")) == 6  # 5 minutes before, 1 after
    raw = history.db.execute("SELECT count(*) FROM raw").fetchone()[0]
    assert raw == 1  # the old raw samples are past retention; their aggregates stay
    history.commit([], later + 31 * 86400)  # and minutes past theirs go too; days stay
    assert history.minutes(0, 10**9, "nas") == []
    assert len(history.days(date(2026, 1, 1), date(2026, 12, 31))) == 2
    history.close()


def test_restart_within_the_gap_keeps_counting(tmp_path: Path) -> None:
    history = History(tmp_path / "p.sqlite3", tz=UTC)
    history.open()
    pending = Pending(history.last_ts)
    pending.add("nas", T0, 10.0, None, None, interval_s=5, max_gap_s=12.5)
    history.commit(pending.take(), T0)
    history.close()
    history.open()
    pending = Pending(history.last_ts)
    assert pending.add("nas", T0 - 1, 10.0, None, None, interval_s=5, max_gap_s=12.5) is None
    again = pending.add("nas", T0 + 12, 10.0, None, None, interval_s=5, max_gap_s=12.5)
    assert again is not None
    assert again.dt == 12_000
    history.close()


def test_a_file_that_is_no_database_is_moved_aside(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    history = History(path)
    history.open()
    history.commit([Sample("nas", round(T0 * 1000), 1000, 5000)], T0)
    history.close()
    aside = list(tmp_path.glob("p.sqlite3.broken-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == b"this is not sqlite" * 100
    assert "moved to" in caplog.text
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_locked_or_newer_history_is_never_moved_aside(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Locked, full, read-only or from a newer edgepair: the years of history stay put."""
    path = tmp_path / "p.sqlite3"
    history = History(path)
    history.open()
    history.commit([Sample("nas", round(T0 * 1000), 1000, 5000)], T0)
    history.close()
    monkeypatch.setattr(history_module, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TemporaryError, match="database is locked"):
            History(path).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(FatalError, match="newer than this edgepair"):
        History(path).open()
    assert not list(tmp_path.glob("*.broken-*"))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM raw").fetchone() == (1,)


def test_a_failed_poll_leaves_a_gap_even_when_short() -> None:
    pending = Pending()
    first = pending.add("nas", T0, 100.0, None, None, interval_s=10, max_gap_s=25)
    pending.failed("nas")  # the poll at T0 + 10 failed at once
    after = pending.add("nas", T0 + 20, 100.0, None, None, interval_s=10, max_gap_s=25)
    regular = pending.add("nas", T0 + 30, 100.0, None, None, interval_s=10, max_gap_s=25)
    assert first is not None
    assert after is not None
    assert regular is not None
    assert after.dt == 10_000  # not 20 s of energy made up across the failure
    assert regular.dt == 10_000


def test_pending_is_bounded() -> None:
    pending = Pending(limit=3)
    for k in range(5):
        pending.add("nas", T0 + k, 1.0, None, None, interval_s=1, max_gap_s=2.5)
    assert [s.ts for s in pending.samples] == [round((T0 + k) * 1000) for k in (2, 3, 4)]
    assert pending.dropped == 2


def test_a_failing_plug_is_asked_again_with_a_capped_doubling_delay() -> None:
    status = PlugStatus(PlugConfig(name="nas", address="127.0.0.1", interval_s=5.0))
    delays = []
    for _ in range(8):
        delays.append(status.next_poll_in(max_backoff_s=60.0))
        status.failed(PlugError("unreachable", "refused"))
    assert delays == [5.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    for _ in range(1000):
        status.failed(PlugError("unreachable", "refused"))
    assert status.next_poll_in(max_backoff_s=60.0) == 60.0  # no overflow after a long outage
    status.succeeded(Reading(at=T0, w=30.0))
    assert status.next_poll_in(max_backoff_s=60.0) == 5.0  # back to the interval at once
