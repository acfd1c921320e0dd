"""usage.json's build: pure tables, days in the Pi's zone (DST included), missing plug data."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from handshake import documents
from handshake.documents import UsageDocument
from handshake.messages import WAKE_REASONS
from pi import state as sm
from pi.usage.build import HostEnergy, build, online_minutes
from pi.usage.ledger import Interval, Wake
from pi.usage.service import ledger_state

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    """A Berlin wall-clock time as a Unix time."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def ms(text: str) -> int:
    return round(at(text) * 1000)


def iv(start: str, end: str | None, state: str) -> Interval:
    return Interval(ms(start), None if end is None else ms(end), state)


NOW = "2026-06-10 12:00"
# Online across midnight in Berlin (21:00-23:00 UTC: all of it June 9 in UTC).
ACROSS_MIDNIGHT = [iv("2026-06-09 00:00", "2026-06-09 23:00", "offline"),
                   iv("2026-06-09 23:00", "2026-06-10 01:00", "online"),
                   iv("2026-06-10 01:00", None, "offline")]


@pytest.mark.parametrize(("intervals", "now", "day", "recorded", "online", "partial"), [
    (ACROSS_MIDNIGHT, NOW, "2026-06-09", 24.0, 1.0, False),
    (ACROSS_MIDNIGHT, NOW, "2026-06-10", 12.0, 1.0, True),
    (ACROSS_MIDNIGHT, NOW, "2026-06-08", 0.0, 0.0, False),  # before the ledger began
    # the open interval runs to now, not to the end of the day
    ([iv("2026-06-10 06:00", None, "online")], "2026-06-10 06:30", "2026-06-10", 0.5, 0.5, True),
    # spring forward: 2026-03-29 has 23 hours in Berlin, autumn back 25
    ([iv("2026-03-28 00:00", None, "online")], "2026-03-30 12:00", "2026-03-29", 23.0, 23.0,
     False),
    ([iv("2026-10-24 00:00", None, "offline")], "2026-10-26 12:00", "2026-10-25", 25.0, 0.0,
     False),
    # waking and going_offline are recorded but not online
    ([iv("2026-06-10 00:00", "2026-06-10 00:03", "waking"),
      iv("2026-06-10 00:03", "2026-06-10 02:00", "online"),
      iv("2026-06-10 02:00", "2026-06-10 02:06", "going_offline"),
      iv("2026-06-10 02:06", None, "offline")], "2026-06-10 03:00", "2026-06-10", 3.0,
     1.95, True),
])
def test_hours_per_local_day(intervals: list[Interval], now: str, day: str, recorded: float,
                             online: float, partial: bool) -> None:
    document = build(intervals, [], at(now), BERLIN)
    (found,) = [d for d in document.days if d.date == day]
    assert (found.hours_recorded, found.hours_online, found.partial) == (recorded, online, partial)


@pytest.mark.parametrize(("wake_at", "day"), [
    ("2026-06-10 00:30", "2026-06-10"),  # 22:30 UTC on June 9: Berlin's June 10
    ("2026-06-09 23:59", "2026-06-09"),
    ("2026-06-10 00:00", "2026-06-10"),  # midnight belongs to the day it starts
])
def test_wakes_count_on_their_local_day(wake_at: str, day: str) -> None:
    document = build(ACROSS_MIDNIGHT, [Wake(ms(wake_at), "demand:dns", "10.0.0.7")], at(NOW),
                     BERLIN)
    counts = {d.date: d.wakes["demand:dns"] for d in document.days if d.wakes["demand:dns"]}
    assert counts == {day: 1}


def test_thirty_days_ending_today_with_every_reason() -> None:
    document = build(ACROSS_MIDNIGHT, [], at(NOW), BERLIN)
    assert len(document.days) == 30
    assert document.days[0].date == "2026-05-12"
    assert document.days[-1].date == "2026-06-10"
    assert all(set(d.wakes) == set(WAKE_REASONS) for d in document.days)
    assert document.recorded_since is not None
    assert document.recorded_since.startswith("2026-06-08T22:00")


ENERGY = HostEnergy(plug="nas", daily_kwh={"2026-06-09": 0.3, "2026-06-01": 1.0},
                    online_draw_w=40.0)


@pytest.mark.parametrize(("day", "host_kwh", "saved_kwh", "saved_money"), [
    # 40 W × 24 h = 0.96 kWh always on, 0.3 drawn: 0.66 saved at 0.30/kWh
    ("2026-06-09", 0.3, 0.66, 0.2),
    # a day the host drew more than its online average: a negative saving, as it is
    ("2026-06-01", 1.0, -0.04, -0.01),
    ("2026-06-10", None, None, None),  # no plug data today (the power daemon is down)
    ("2026-06-05", None, None, None),
])
def test_energy_saved_against_an_always_on_host(day: str, host_kwh: float | None,
                                                saved_kwh: float | None,
                                                saved_money: float | None) -> None:
    document = build(ACROSS_MIDNIGHT, [], at(NOW), BERLIN, energy=ENERGY, price_per_kwh=0.30,
                     currency="CHF")
    (found,) = [d for d in document.days if d.date == day]
    assert (found.host_kwh, found.saved_kwh, found.saved_money) == (host_kwh, saved_kwh,
                                                                    saved_money)
    assert document.host_plug == "nas"
    assert document.currency == "CHF"


def test_today_partial_saving_counts_the_hours_so_far() -> None:
    energy = HostEnergy(plug="nas", daily_kwh={"2026-06-10": 0.1}, online_draw_w=50.0)
    document = build(ACROSS_MIDNIGHT, [], at(NOW), BERLIN, energy=energy)
    # 50 W × 12 h = 0.6 kWh had it been up since midnight; no price, no money
    assert (document.days[-1].saved_kwh, document.days[-1].saved_money) == (0.5, None)


def test_no_online_average_yet_means_no_saving() -> None:
    energy = HostEnergy(plug="nas", daily_kwh={"2026-06-09": 0.3}, online_draw_w=None)
    day = build(ACROSS_MIDNIGHT, [], at(NOW), BERLIN, energy=energy).days[-2]
    assert (day.host_kwh, day.saved_kwh) == (0.3, None)


def test_without_a_host_plug_energy_is_null() -> None:
    document = build(ACROSS_MIDNIGHT, [], at(NOW), BERLIN, price_per_kwh=0.3)
    assert document.host_plug is None
    assert all(d.host_kwh is None and d.saved_kwh is None for d in document.days)
    assert document.month is not None
    assert (document.month.host_kwh, document.month.saved_money) == (None, None)


def test_month_totals_cover_the_calendar_month_even_past_thirty_days() -> None:
    # July 31st: the 30 days shown start on July 2nd, the month on July 1st.
    intervals = [iv("2026-06-30 00:00", "2026-07-01 10:00", "offline"),
                 iv("2026-07-01 10:00", "2026-07-01 12:00", "online"),
                 iv("2026-07-01 12:00", "2026-07-31 08:00", "offline"),
                 iv("2026-07-31 08:00", None, "online")]
    wakes = [Wake(ms("2026-06-30 10:00"), "api"), Wake(ms("2026-07-01 09:59"), "schedule"),
             Wake(ms("2026-07-31 07:58"), "demand:port", "10.0.0.9")]
    energy = HostEnergy(plug="nas", daily_kwh={"2026-06-30": 5.0, "2026-07-01": 0.5,
                                                "2026-07-31": 0.2}, online_draw_w=40.0)
    document = build(intervals, wakes, at("2026-07-31 09:00"), BERLIN, energy=energy,
                     price_per_kwh=0.5)
    assert document.days[0].date == "2026-07-02"
    month = document.month
    assert month is not None
    assert month.month == "2026-07"
    assert month.hours_online == 3.0
    assert (month.wakes["schedule"], month.wakes["demand:port"], month.wakes["api"]) == (1, 1, 0)
    assert month.host_kwh == 0.7
    # July 1st: 0.96 - 0.5 = 0.46; July 31st so far (9 h): 0.36 - 0.2 = 0.16
    assert month.saved_kwh == 0.62
    assert month.saved_money == 0.31


def test_recent_wakes_are_the_last_fifty_newest_first() -> None:
    wakes = [Wake(ms("2026-06-01 00:00") + i * 60_000, "api") for i in range(60)]
    document = build(ACROSS_MIDNIGHT, wakes, at(NOW), BERLIN)
    assert len(document.recent_wakes) == 50
    assert document.recent_wakes[0].at == "2026-05-31T22:59:00.000Z"
    assert document.recent_wakes[-1].at == "2026-05-31T22:10:00.000Z"


def test_the_noisiest_demand_clients_first() -> None:
    wakes = [Wake(ms("2026-06-09 10:00"), "demand:dns", "10.0.0.2"),
             Wake(ms("2026-06-09 11:00"), "demand:port", "10.0.0.3"),
             Wake(ms("2026-06-09 12:00"), "demand:dns", "10.0.0.3"),
             Wake(ms("2026-06-09 13:00"), "demand:dns", "10.0.0.4"),
             Wake(ms("2026-06-09 14:00"), "api", "10.0.0.5")]  # not a demand wake
    clients = build(ACROSS_MIDNIGHT, wakes, at(NOW), BERLIN).demand_clients
    assert [(c.client, c.wakes) for c in clients] == [("10.0.0.3", 2), ("10.0.0.4", 1),
                                                      ("10.0.0.2", 1)]


def test_today_timeline_is_clipped_to_today() -> None:
    document = build(ACROSS_MIDNIGHT, [], at(NOW), BERLIN)
    assert (document.today_start, document.today_end) == ("2026-06-09T22:00:00.000Z",
                                                          "2026-06-10T22:00:00.000Z")
    bands = document.today
    assert [(b.start, b.end, b.state) for b in bands] == [
        ("2026-06-09T22:00:00.000Z", "2026-06-09T23:00:00.000Z", "online"),
        ("2026-06-09T23:00:00.000Z", "2026-06-10T10:00:00.000Z", "offline")]


@pytest.mark.parametrize(("intervals", "expected"), [
    ([Interval(90_000, 330_000, "online")], [(2, 5)]),  # 1:30 to 5:30: minutes 2, 3, 4
    ([Interval(60_000, 120_000, "online")], [(1, 2)]),
    ([Interval(61_000, 119_000, "online")], []),  # no whole minute
    ([Interval(0, 600_000, "offline")], []),
    ([Interval(0, None, "online")], [(0, 10)]),  # open: up to now (600 s)
])
def test_online_minutes_are_whole_minutes(intervals: list[Interval],
                                          expected: list[tuple[int, int]]) -> None:
    assert online_minutes(intervals, 600.0) == expected


def test_the_document_round_trips_through_the_public_reader() -> None:
    document = build(ACROSS_MIDNIGHT, [Wake(ms("2026-06-10 00:30"), "plan")], at(NOW), BERLIN,
                     energy=ENERGY, price_per_kwh=0.3, interval_s=60)
    again = documents.decode(documents.encode(document), UsageDocument)
    assert again.days == document.days
    assert documents.schema_of(UsageDocument) == "edgepair.usage/1"
    assert documents.FILES[UsageDocument] == "usage.json"
    assert again.stale_after_s == 180


def test_hours_before_the_host_was_ever_seen_are_unknown_not_asleep() -> None:
    assert ledger_state(sm.initial(0.0)) == "unknown"
    asleep = sm.HostStatus(state=sm.HostState.OFFLINE, since=0.0, reason="suspend")
    assert ledger_state(asleep) == "offline"
    up, _ = sm.step(sm.step(sm.initial(0.0), sm.HeartbeatOk(), 1.0, sm.Rules(rise=2))[0],
                    sm.HeartbeatOk(), 2.0, sm.Rules(rise=2))
    assert ledger_state(up) == "online"
    day = build([Interval(0, 3_600_000, "unknown"), Interval(3_600_000, 7_200_000, "offline")],
                [], 7200.0, tz=ZoneInfo("UTC"))
    assert day.days[-1].hours_online == 0
