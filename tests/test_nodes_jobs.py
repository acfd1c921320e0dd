"""The node jobs' scheduling, as pure functions of the jobs, the log and the clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec

from pi.nodes import jobs
from pi.nodes.config import JobConfig

BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str, tz: object = UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()  # type: ignore[arg-type]


DOWN = JobConfig(id="down", node="blinds", capability="motor", at="20:00", then="up",
                 params={"direction": "down", "duration_s": 5})
UP = JobConfig(id="up", node="blinds", capability="motor", at="07:00",
               params={"direction": "up", "duration_s": 5})
HEAT = JobConfig(id="heat", node="heater", capability="relay", reading="temperature",
                 source="hall", below=18.0, params={"on": True})
ALL = (DOWN, UP, HEAT)


def never(_: str) -> bool:
    return False


def long_ago(_: str) -> float:
    return 0.0


def test_the_latest_daily_occurrence_is_due_with_a_stable_id() -> None:
    now = ts("2026-12-07T20:00:03", BERLIN)
    [due] = jobs.scheduled(ALL, long_ago, never, now, BERLIN, grace_s=300)
    assert due.id == "down@20261207T190000Z"  # 20:00 in Berlin is 19:00 UTC
    assert (due.status, due.due, due.params) == ("pending", ts("2026-12-07T20:00", BERLIN),
                                                 {"direction": "down", "duration_s": 5})
    # Known already: nothing new, however often the loop asks.
    assert jobs.scheduled(ALL, long_ago, lambda i: i == due.id, now, BERLIN, 300) == []
    # The follow-up (up) is never scheduled on its own.
    assert all(e.job != "up" for e in jobs.scheduled(ALL, long_ago, never,
                                                     ts("2026-12-08T07:00:01", BERLIN), BERLIN, 300))


def test_past_grace_an_occurrence_is_missed_and_one_before_the_job_existed_is_not_owed() -> None:
    now = ts("2026-12-07T20:10", BERLIN)
    [late] = jobs.scheduled(ALL, long_ago, never, now, BERLIN, grace_s=300)
    assert late.status == "missed"
    added = ts("2026-12-07T20:05", BERLIN)
    assert jobs.scheduled(ALL, lambda _: added, never, now, BERLIN, grace_s=300) == []


def test_a_done_leader_starts_its_follow_up_at_the_next_time_or_after_its_delay() -> None:
    done = replace(jobs.scheduled(ALL, long_ago, never, ts("2026-12-07T20:00:01", BERLIN),
                                  BERLIN, 300)[0], status="done",
                   done_at=ts("2026-12-07T20:00:07", BERLIN))
    follow = jobs.follow_up(ALL, done, BERLIN)
    assert follow is not None
    assert follow.due == ts("2026-12-08T07:00", BERLIN)  # 07:00 the next day
    assert (follow.id, follow.leader) == ("up@20261208T060000Z", done.id)
    delayed = (msgspec.structs.replace(DOWN, then=None), JobConfig(id="up", node="blinds", capability="motor",
                                                   after="down", delay_s=30,
                                                   params={"direction": "up", "duration_s": 5}))
    follow = jobs.follow_up(delayed, done, BERLIN)
    assert follow is not None
    assert follow.due == done.done_at + 30  # type: ignore[operator]
    assert jobs.follow_up(ALL, replace(done, status="failed"), BERLIN) is None


def test_a_threshold_fires_on_the_crossing_only() -> None:
    assert jobs.crossed(HEAT, 18.5, 17.9)
    assert not jobs.crossed(HEAT, 17.9, 17.5)  # still below: already fired
    assert not jobs.crossed(HEAT, None, 17.0)  # no earlier reading: not known to cross
    assert not jobs.crossed(HEAT, 18.0, 18.0)
    [fired] = jobs.fired(ALL, "hall", "temperature", 18.2, 17.8, now=1000.0)
    assert (fired.node, fired.job, fired.due) == ("heater", "heat", 1000.0)
    assert jobs.fired(ALL, "kitchen", "temperature", 18.2, 17.8, now=1000.0) == []


def test_delivery_within_grace_then_missed_and_a_silent_node_fails() -> None:
    e = jobs.Execution(id="x@1", job="x", node="n", capability="relay", params={}, due=100.0)
    assert jobs.deliverable([e], 99.0, 60) == []  # not yet due
    assert jobs.deliverable([e], 150.0, 60) == [e]
    assert jobs.deliverable([e], 161.0, 60) == []  # past grace, never sent
    [missed] = jobs.expired([e], 161.0, 60)
    assert missed.status == "missed"
    sent = replace(e, status="sent", sent_at=101.0)
    assert jobs.deliverable([sent], 500.0, 60) == [sent]  # re-delivery is harmless
    assert jobs.expired([sent], 101.0 + 60 + jobs.RESULT_MARGIN_S, 60) == []
    [failed] = jobs.expired([sent], 101.0 + 61 + jobs.RESULT_MARGIN_S, 60)
    assert failed.status == "failed"
    assert "no result" in failed.result["error"]


def test_next_job_is_the_earliest_open_execution_or_daily_occurrence() -> None:
    now = ts("2026-12-07T12:00", BERLIN)
    assert jobs.next_job(ALL, "blinds", [], now, BERLIN) == (
        "down@20261207T190000Z", ts("2026-12-07T20:00", BERLIN), "motor")
    soon = jobs.Execution(id="up@x", job="up", node="blinds", capability="motor", params={},
                          due=now + 60)
    assert jobs.next_job(ALL, "blinds", [soon], now, BERLIN)[0] == "up@x"  # type: ignore[index]
    assert jobs.next_job(ALL, "nobody", [], now, BERLIN) is None


def test_daily_times_across_a_dst_change() -> None:
    # 2026-03-29: Berlin skips 02:00-03:00; 07:00 is still 07:00 local, 05:00 UTC.
    assert jobs.next_at("07:00", BERLIN, ts("2026-03-28T20:00", BERLIN)) == \
        ts("2026-03-29T05:00")
    assert jobs.latest_at("07:00:30", BERLIN, ts("2026-03-29T07:00:29", BERLIN)) == \
        ts("2026-03-28T07:00:30", BERLIN)
