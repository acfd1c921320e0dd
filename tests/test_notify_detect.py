"""Alarm detection from successive public documents: debounce, dedupe, ends, restarts."""

from __future__ import annotations

import json

from handshake.documents import (
    ControlDocument,
    HostDocument,
    InboxDocument,
    InboxPending,
    PiDocument,
    PowerDocument,
    PowerPlug,
)
from handshake.util.timeutil import iso
from pi.notify import detect
from pi.notify.detect import Docs, Limits, State, observe, step

T0 = 1_800_000_000.0
DEBOUNCE = 30.0
LIMITS = Limits(inbox_alert_after_s=3600)


def host(state: str, **extra: object) -> Docs:
    return Docs(host=HostDocument(generated_at=iso(T0) or "", state=state, since=iso(T0),
                                  boot_timeout_s=180, **extra))  # type: ignore[arg-type]


def run(sequence: list[tuple[float, Docs]], state: State | None = None,
        ) -> tuple[State, list[tuple[float, str]]]:
    """Observe each (time, docs) in turn; the events as (time, event)."""
    state = state or State()
    out = []
    for now, docs in sequence:
        observation = observe(docs, LIMITS, now, state.host_state)
        state, events = step(state, observation, now, DEBOUNCE)
        out += [(now, e.event) for e in events]
    return state, out


def test_an_alarm_is_raised_once_after_the_debounce_and_ends_once() -> None:
    seq = [(T0 + t, host("unreachable")) for t in (0, 10, 29, 30, 60, 600)]
    seq += [(T0 + t, host("online")) for t in (601, 620, 631, 700)]
    _, events = run(seq)
    assert events == [(T0 + 30, "host_unreachable"), (T0 + 631, "host_back")]


def test_a_blip_shorter_than_the_debounce_is_never_sent() -> None:
    seq = [(T0, host("online")), (T0 + 1, host("unreachable")), (T0 + 20, host("online")),
           (T0 + 100, host("online"))]
    state, events = run(seq)
    assert events == []
    assert state.alarms == {}


def test_flapping_after_the_raise_is_one_alarm_not_many() -> None:
    seq = [(T0 + t, host("unreachable")) for t in (0, 30)]
    for t in range(40, 400, 20):  # online for 10 s, back for 10 s, … never 30 s in a row
        seq += [(T0 + t, host("online")), (T0 + t + 10, host("unreachable"))]
    _, events = run(seq)
    assert events == [(T0 + 30, "host_unreachable")]


def test_a_wake_that_times_out_says_which_wake() -> None:
    seq = [(T0, host("waking")), (T0 + 180, host("unreachable", last_wake={
        "at": iso(T0), "source": "demand:dns", "error": None}))]
    seq += [(T0 + 210, host("unreachable"))]
    state, events = run(seq)
    assert events == [(T0 + 210, "wake_timeout")]
    assert "demand:dns wake" in state.alarms["host"].condition.message


def test_hung_or_off_is_in_the_message() -> None:
    docs = host("unreachable", power={"plug": "nas", "state": "hung", "watts": 40.0})
    observation = observe(docs, LIMITS, T0, "online")
    assert "hung" in observation.conditions["host"].message


def test_a_stale_or_missing_document_neither_raises_nor_ends_an_alarm() -> None:
    state, events = run([(T0, host("unreachable")), (T0 + 30, host("unreachable"))])
    assert events == [(T0 + 30, "host_unreachable")]
    state, events = run([(T0 + t, Docs()) for t in (100, 200, 300)], state)
    assert events == []
    assert state.alarms["host"].raised


def test_plugs_disk_memory_inbox_safe_state_and_nodes() -> None:
    now = T0 + 7200
    docs = Docs(
        power=PowerDocument(generated_at=iso(now) or "", plugs=[
            PowerPlug(name="nas", role="host", health="ok"),
            PowerPlug(name="tv", role="other", health="unreachable", error="timed out")]),
        pi=PiDocument(generated_at=iso(now) or "",
                      disk={"path": "/var/lib/edgepair", "total_bytes": 100, "free_bytes": 5},
                      memory={"total_bytes": 100, "available_bytes": 50},
                      backup={"enabled": True, "last_error": {"at": iso(now),
                                                              "message": "host refused"}}),
        inbox=InboxDocument(generated_at=iso(now) or "",
                            pending=InboxPending(files=2, bytes=10, oldest=iso(T0))),
        control=ControlDocument(generated_at=iso(now) or "", mode="safe",
                                reason="plan_expired"),
        nodes={"nodes": [{"hwid": "a1", "state": "pending"}, {"hwid": "b2", "state": "online"}]})
    observation = observe(docs, LIMITS, now, None)
    assert set(observation.conditions) == {"plug:tv", "disk", "inbox", "safe_state", "node:a1",
                                           "backup"}
    assert "host refused" in observation.conditions["backup"].message
    assert "plan_expired" in observation.conditions["safe_state"].message
    _, events = step(State(), observation, now, 0)
    assert {e.event for e in events} == {"plug_unreachable", "disk_low", "inbox_waiting",
                                         "safe_state", "node_pending", "backup_failed"}
    node = next(e for e in events if e.event == "node_pending")
    assert node.severity == "info"
    # A young inbox file is no alarm; without alert_after_s there is no inbox alarm at all.
    young = observe(docs, LIMITS, T0 + 60, None)
    assert "inbox" not in young.conditions
    assert "inbox" not in observe(docs, Limits(), now, None).conditions


def test_a_restart_neither_repeats_a_raised_alarm_nor_loses_its_end() -> None:
    state, events = run([(T0, host("unreachable")), (T0 + 30, host("unreachable"))])
    assert [e for _, e in events] == ["host_unreachable"]
    restored = detect.state_from_json(json.loads(json.dumps(detect.state_to_json(state))))
    assert restored == state
    # The daemon was down while the host came back: the end is still sent, once.
    _, events = run([(T0 + 900, host("unreachable")), (T0 + 1000, host("online")),
                     (T0 + 1030, host("online")), (T0 + 1100, host("online"))], restored)
    assert [e for _, e in events] == ["host_back"]


def test_event_ids_are_stable_per_alarm_and_kind() -> None:
    obs = observe(host("unreachable"), LIMITS, T0, None)
    _, first = step(State(), obs, T0, 0)
    _, again = step(State(), obs, T0, 0)
    assert first[0].id == again[0].id
    assert first[0].id.endswith(":raise")
