"""The real firmware on the real MicroPython unix port against the real node daemon."""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.nodesite import NodeSite, cli, until

MOTOR_UP, MOTOR_DOWN = 12, 13


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%H:%M:%S")


def executions(site: NodeSite) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(site.state / "private/node-jobs.sqlite") as db:
        return {row[0]: (row[1], row[2])
                for row in db.execute("SELECT id, status, result FROM executions")}


def pin_events(board_state: dict[str, object], pin: int) -> list[int]:
    events = board_state.get("events", [])
    assert isinstance(events, list)
    return [value for _, p, value in events if p == pin]


@pytest.fixture
def site(tmp_path: Path) -> NodeSite:
    site = NodeSite(tmp_path)
    yield site
    site.close()


async def test_a_board_pairs_runs_a_job_and_its_follow_up_and_reports_readings(
        site: NodeSite) -> None:
    await site.start()
    board = site.bundle("blinds-1", "motor:max_s=30", "temperature")
    board.inputs(onewire={"4": 21.5})
    board.start()
    pending = await until(lambda: site.entry("blinds-1"), what="the hello in nodes.json")
    assert pending.state == "pending"
    assert pending.capabilities == ["motor", "temperature"]

    # A stranger's code (or a typo) does not pair it.
    code, _, err = await cli(site, "approve", "blinds-1", "--code", "WRONG234", "--name", "blinds")
    assert code == 1
    assert "wrong pairing code" in err
    assert site.entry("blinds-1").state == "pending"

    code, out, _ = await cli(site, "approve", "blinds-1", "--code", board.code,
                             "--name", "living-blinds", "--role", "blinds")
    assert code == 0, out
    online = await until(lambda: (e := site.entry("blinds-1")) and e.state == "online" and e,
                         what="online after approval")
    assert (online.name, online.role) == ("living-blinds", "blinds")
    reading = await until(lambda: site.entry("blinds-1").readings.get("temperature"))
    assert (reading.value, reading.unit) == (21.5, "°C")
    board.inputs(onewire={"4": 23.25})
    await until(lambda: site.entry("blinds-1").readings["temperature"].value == 23.25,
                what="a new reading in nodes.json")

    # Validated against what the board declared: nothing stored on a bad job.
    code, _, err = await cli(site, "job", "add", "lamp", "--node", "living-blinds",
                             "--capability", "relay", "--param", "on=true", "--at", "20:00")
    assert code == 1
    assert "has no relay" in err
    code, _, err = await cli(site, "job", "add", "long", "--node", "living-blinds",
                             "--capability", "motor", "--param", "direction=down",
                             "--param", "duration_s=31", "--at", "20:00")
    assert code == 1
    assert "duration_s ≤ 30" in err
    code, out, _ = await cli(site, "job", "list")
    assert "lamp" not in out
    assert "long" not in out

    # Blinds down for 1 s, and as the follow-up, up again 0.5 s after.
    code, _, err = await cli(site, "job", "add", "down", "--node", "living-blinds",
                             "--capability", "motor", "--param", "direction=down",
                             "--param", "duration_s=1", "--at", at(4))
    assert code == 0, err
    code, _, err = await cli(site, "job", "add", "up", "--node", "living-blinds",
                             "--capability", "motor", "--param", "direction=up",
                             "--param", "duration_s=1", "--after", "down", "--delay-s", "0.5")
    assert code == 0, err
    nxt = await until(lambda: site.entry("blinds-1").next_job)
    assert nxt.id.startswith("down@")
    assert nxt.action == "motor down 1 s"
    await until(lambda: [s for s, _ in executions(site).values()] == ["done", "done"],
                timeout=15, what="the job and its follow-up done")
    state = board.state()
    assert pin_events(state, MOTOR_DOWN) == [0, 1, 0]
    assert pin_events(state, MOTOR_UP) == [0, 1, 0]
    assert max(state["heap"].get("live_peak", 0), 1) < 100 * 1024


async def test_the_pi_killed_mid_job_stops_the_motor_and_the_job_never_runs_twice(
        site: NodeSite) -> None:
    await site.start()
    board = site.bundle("blinds-2", "motor:max_s=30", "temperature")
    board.inputs(onewire={"4": 20.0})
    board.start()
    await until(lambda: site.entry("blinds-2"))
    assert (await cli(site, "approve", "blinds-2", "--code", board.code, "--name", "b2"))[0] == 0
    await until(lambda: "temperature" in site.entry("blinds-2").readings)
    # A reading trigger: the blinds go down (for 20 s) when it is colder than 18 °C.
    code, _, err = await cli(site, "job", "add", "cold", "--node", "b2", "--capability",
                             "motor", "--param", "direction=down", "--param", "duration_s=20",
                             "--reading", "temperature", "--below", "18")
    assert code == 0, err
    board.inputs(onewire={"4": 17.5})
    await until(lambda: board.pin(MOTOR_DOWN) == 1, what="the motor running")
    assert site.stop(signal.SIGKILL) == -signal.SIGKILL
    # lost_after_s = 1.5: the node stops its motor on its own, long before the 20 s.
    await until(lambda: board.pin(MOTOR_DOWN) == 0, timeout=5, what="the motor stopped")
    await site.start()
    done = await until(lambda: [v for v in executions(site).values() if v[0] != "sent"],
                       timeout=10, what="the result after the restart")
    assert done[0][0] == "failed"
    assert "lost the Pi" in (done[0][1] or "")
    # Re-delivered after the restart (still open then), it was only reported again; the
    # reading, still below, does not fire it again (a threshold fires on the crossing).
    await until(lambda: site.entry("blinds-2").state == "online")
    assert len(executions(site)) == 1
    assert pin_events(board.state(), MOTOR_DOWN) == [0, 1, 0]


async def test_a_removed_node_gets_401_and_asks_to_pair_again(site: NodeSite) -> None:
    await site.start()
    board = site.bundle("relay-1", "relay")
    board.start()
    await until(lambda: site.entry("relay-1"))
    assert (await cli(site, "approve", "relay-1", "--code", board.code, "--name", "r1"))[0] == 0
    await until(lambda: site.entry("relay-1").state == "online")
    assert (board.folder / "key.json").exists()
    code, out, _ = await cli(site, "remove", "r1")
    assert code == 0
    assert "removed r1" in out
    await until(lambda: "refused (401)" in board.log(), what="the node told 401")
    pending = await until(lambda: (e := site.entry("relay-1")) and e.state == "pending" and e,
                          what="pending again")
    assert pending.name is None
    assert not (board.folder / "key.json").exists()
