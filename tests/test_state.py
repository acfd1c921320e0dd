"""The host state machine: every state × every event, and random walks with invariants."""

from __future__ import annotations

import random

import pytest

from pi.state import (
    NEVER_SEEN,
    Alarm,
    ComingOnline,
    GoingOffline,
    HeartbeatFail,
    HeartbeatOk,
    HostState,
    HostStatus,
    Resolved,
    Rules,
    SendWol,
    SetDns,
    Tick,
    WakeRequested,
    initial,
    step,
)

RULES = Rules(fall=3, rise=2, boot_timeout_s=100, going_offline_grace_s=50)
S = HostState
T0 = 1000.0


def st(state: HostState, **kw: object) -> HostStatus:
    return HostStatus(state=state, since=T0, **kw)  # type: ignore[arg-type]


def kinds(actions: list[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


# (start status, event, now) -> (expected state, expected action kinds)
TABLE = [
    # online
    (st(S.ONLINE), HeartbeatOk(), T0 + 1, S.ONLINE, []),
    (st(S.ONLINE), HeartbeatFail(), T0 + 1, S.ONLINE, []),
    (st(S.ONLINE, fail_streak=2), HeartbeatFail(), T0 + 1, S.UNREACHABLE, ["SetDns", "Alarm"]),
    (st(S.ONLINE), GoingOffline("suspend"), T0 + 1, S.GOING_OFFLINE, ["SetDns"]),
    (st(S.ONLINE), ComingOnline(), T0 + 1, S.ONLINE, []),
    (st(S.ONLINE), WakeRequested("api"), T0 + 1, S.ONLINE, []),
    (st(S.ONLINE), Tick(), T0 + 1000, S.ONLINE, []),
    # going_offline
    (st(S.GOING_OFFLINE), HeartbeatOk(), T0 + 1, S.GOING_OFFLINE, []),
    (st(S.GOING_OFFLINE), HeartbeatOk(), T0 + 50, S.ONLINE, ["SetDns", "Resolved"]),
    (st(S.GOING_OFFLINE), HeartbeatFail(), T0 + 1, S.GOING_OFFLINE, []),
    (st(S.GOING_OFFLINE, fail_streak=2), HeartbeatFail(), T0 + 1, S.OFFLINE, []),
    (st(S.GOING_OFFLINE), GoingOffline("reboot"), T0 + 1, S.GOING_OFFLINE, []),
    (st(S.GOING_OFFLINE), ComingOnline(), T0 + 1, S.ONLINE, ["SetDns"]),
    (st(S.GOING_OFFLINE), WakeRequested("api"), T0 + 1, S.GOING_OFFLINE, []),
    (st(S.GOING_OFFLINE), Tick(), T0 + 1000, S.GOING_OFFLINE, []),
    # offline
    (st(S.OFFLINE), HeartbeatOk(), T0 + 1, S.OFFLINE, []),
    (st(S.OFFLINE, ok_streak=1), HeartbeatOk(), T0 + 1, S.ONLINE, ["SetDns"]),
    (st(S.OFFLINE, fail_streak=9), HeartbeatFail(), T0 + 1, S.OFFLINE, []),
    (st(S.OFFLINE), GoingOffline("shutdown"), T0 + 1, S.OFFLINE, []),
    (st(S.OFFLINE), ComingOnline(), T0 + 1, S.ONLINE, ["SetDns"]),
    (st(S.OFFLINE), WakeRequested("api"), T0 + 1, S.WAKING, ["SendWol"]),
    (st(S.OFFLINE), Tick(), T0 + 1000, S.OFFLINE, []),
    (st(S.OFFLINE, wake_at=T0 + 10), Tick(), T0 + 9, S.OFFLINE, []),
    (st(S.OFFLINE, wake_at=T0 + 10), Tick(), T0 + 10, S.WAKING, ["SendWol"]),
    # waking
    (st(S.WAKING), HeartbeatOk(), T0 + 1, S.WAKING, []),
    (st(S.WAKING, ok_streak=1), HeartbeatOk(), T0 + 1, S.ONLINE, ["SetDns"]),
    (st(S.WAKING, fail_streak=50), HeartbeatFail(), T0 + 1, S.WAKING, []),
    (st(S.WAKING), GoingOffline("suspend"), T0 + 1, S.GOING_OFFLINE, []),
    (st(S.WAKING), ComingOnline(), T0 + 1, S.ONLINE, ["SetDns"]),
    (st(S.WAKING), WakeRequested("api"), T0 + 1, S.WAKING, ["SendWol"]),
    (st(S.WAKING), Tick(), T0 + 99, S.WAKING, []),
    (st(S.WAKING), Tick(), T0 + 100, S.UNREACHABLE, ["Alarm"]),
    # unreachable
    (st(S.UNREACHABLE), HeartbeatOk(), T0 + 1, S.UNREACHABLE, []),
    (st(S.UNREACHABLE, ok_streak=1), HeartbeatOk(), T0 + 1, S.ONLINE, ["SetDns", "Resolved"]),
    (st(S.UNREACHABLE), HeartbeatFail(), T0 + 1, S.UNREACHABLE, []),
    (st(S.UNREACHABLE), GoingOffline("shutdown"), T0 + 1, S.GOING_OFFLINE, ["Resolved"]),
    (st(S.UNREACHABLE), ComingOnline(), T0 + 1, S.ONLINE, ["SetDns", "Resolved"]),
    (st(S.UNREACHABLE), WakeRequested("button"), T0 + 1, S.WAKING, ["SendWol", "Resolved"]),
    (st(S.UNREACHABLE), Tick(), T0 + 1000, S.UNREACHABLE, []),
    (st(S.UNREACHABLE, wake_at=T0), Tick(), T0 + 1, S.WAKING, ["SendWol", "Resolved"]),
]


@pytest.mark.parametrize(("start", "event", "now", "state", "actions"), TABLE)
def test_transition(start: HostStatus, event: object, now: float, state: HostState,
                    actions: list[str]) -> None:
    new, acts = step(start, event, now, RULES)  # type: ignore[arg-type]
    assert new.state is state
    assert kinds(acts) == actions
    if state is not start.state:
        assert new.since == now
    else:
        assert new.since == start.since


def test_every_state_and_event_is_covered() -> None:
    covered = {(start.state, type(event)) for start, event, *_ in TABLE}
    events = {HeartbeatOk, HeartbeatFail, GoingOffline, ComingOnline, WakeRequested, Tick}
    assert covered == {(s, e) for s in HostState for e in events}


def test_dns_points_at_host_only_when_online() -> None:
    for state in HostState:
        assert st(state).dns_target == ("host" if state is S.ONLINE else "pi")


def test_wake_while_going_offline_is_sent_once_down() -> None:
    status, acts = step(st(S.GOING_OFFLINE), WakeRequested("api"), T0 + 1, RULES)
    assert acts == []
    assert status.wake_at == T0 + 1
    for _ in range(3):
        status, acts = step(status, HeartbeatFail(), T0 + 5, RULES)
    assert status.state is S.WAKING
    assert any(isinstance(a, SendWol) for a in acts)
    assert status.wake_at is None


def test_going_offline_keeps_wake_at_until_due() -> None:
    status, _ = step(st(S.ONLINE), GoingOffline("suspend", wake_at=T0 + 3600), T0, RULES)
    assert status.wake_at == T0 + 3600
    for _ in range(3):
        status, _ = step(status, HeartbeatFail(), T0 + 10, RULES)
    assert (status.state, status.wake_at) == (S.OFFLINE, T0 + 3600)
    status, acts = step(status, Tick(), T0 + 3600, RULES)
    assert status.state is S.WAKING
    assert acts == [SendWol("wake_at")]


def test_unannounced_loss_alarm_and_recovery() -> None:
    status = st(S.ONLINE)
    for _ in range(3):
        status, acts = step(status, HeartbeatFail("refused"), T0 + 3, RULES)
    assert status.state is S.UNREACHABLE
    assert SetDns("pi") in acts
    assert any(isinstance(a, Alarm) for a in acts)
    status, acts = step(status, HeartbeatOk(), T0 + 4, RULES)
    assert status.state is S.UNREACHABLE
    status, acts = step(status, HeartbeatOk(), T0 + 5, RULES)
    assert status.state is S.ONLINE
    assert SetDns("host") in acts
    assert any(isinstance(a, Resolved) for a in acts)


def test_a_shutdown_announced_while_coming_back_unannounced_is_not_a_return() -> None:
    """Offline, one good heartbeat (back by the power button), then going-offline: the
    heartbeats of its shutdown must not count toward `rise`, nor its silence alarm."""
    status, _ = step(st(S.OFFLINE), HeartbeatOk(), T0 + 1, RULES)
    assert status.state is S.OFFLINE
    status, acts = step(status, GoingOffline("shutdown", wake_at=T0 + 900), T0 + 2, RULES)
    assert status.state is S.GOING_OFFLINE
    assert status.wake_at == T0 + 900
    status, _ = step(status, HeartbeatOk(), T0 + 3, RULES)
    assert status.state is S.GOING_OFFLINE
    for n in range(3):
        status, acts = step(status, HeartbeatFail(), T0 + 4 + n, RULES)
    assert status.state is S.OFFLINE
    assert not any(isinstance(a, Alarm) for a in acts)
    assert status.wake_at == T0 + 900  # the wish survives


def test_a_success_resets_the_fall_count() -> None:
    status = st(S.ONLINE)
    for event in (HeartbeatFail(), HeartbeatFail(), HeartbeatOk(), HeartbeatFail(),
                  HeartbeatFail()):
        status, _ = step(status, event, T0, RULES)
    assert status.state is S.ONLINE


def test_status_round_trips_through_json() -> None:
    status = HostStatus(state=S.OFFLINE, since=T0, wake_at=T0 + 5, reason="suspend",
                        ok_streak=1)
    back = HostStatus.from_json(status.to_json())
    assert (back.state, back.since, back.wake_at, back.reason) == (S.OFFLINE, T0, T0 + 5,
                                                                   "suspend")
    assert back.ok_streak == 0


def test_initial_is_offline_pointing_at_pi() -> None:
    status = initial(T0)
    assert status.state is S.OFFLINE
    assert status.dns_target == "pi"
    assert status.reason == NEVER_SEEN  # says "nothing known yet", not "asleep since start"


def test_never_seen_ends_with_the_first_state_the_heartbeats_establish() -> None:
    status = initial(T0)
    status, _ = step(status, HeartbeatFail(), T0 + 1, RULES)
    assert status.reason == NEVER_SEEN  # failing heartbeats alone still know nothing
    status, _ = step(status, HeartbeatOk(), T0 + 2, RULES)
    status, _ = step(status, HeartbeatOk(), T0 + 3, RULES)
    assert (status.state, status.reason) == (S.ONLINE, None)
    again = HostStatus.from_json(initial(T0).to_json())
    assert again.reason == NEVER_SEEN  # survives a restart before the host was ever seen


EVENTS = [HeartbeatOk(), HeartbeatFail(), GoingOffline("suspend"), GoingOffline("reboot", T0 + 50),
          ComingOnline(), WakeRequested("api"), Tick()]


@pytest.mark.parametrize("seed", range(20))
def test_random_walk_invariants(seed: int) -> None:
    """Following the SetDns actions always leaves DNS where the state says it should be."""
    rng = random.Random(seed)
    status = initial(T0)
    dns = status.dns_target
    now = T0
    for _ in range(500):
        now += rng.choice([0.0, 1.0, 5.0, 60.0])
        before = status
        status, acts = step(status, rng.choice(EVENTS), now, RULES)
        for action in acts:
            if isinstance(action, SetDns):
                dns = action.target
            if isinstance(action, SendWol):
                assert status.state is S.WAKING
        assert dns == status.dns_target
        assert status.since >= before.since
        if status.state is S.WAKING and before.state is not S.WAKING:
            assert any(isinstance(a, SendWol) for a in acts)
