"""[nodes] and [[nodes.jobs]]: every problem named with file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from handshake.errors import ConfigError
from pi import config as pi_config
from tests.helpers import pi_toml


def load(tmp_path: Path, nodes: str) -> pi_config.PiConfig:
    return pi_config.load(pi_toml(tmp_path, extra=nodes))


def problems(tmp_path: Path, nodes: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, nodes)
    return [p.split(": ", 1)[1] for p in info.value.problems]


def test_defaults_and_the_derived_offline_time(tmp_path: Path) -> None:
    config = load(tmp_path, "[nodes]\npoll_s = 8\n")
    assert config.nodes is not None
    assert config.nodes.offline_after_s == 24  # max(10, 3 × poll_s)
    assert config.nodes.listen.port == 8772
    assert "node" in config.daemons()
    assert "node" not in load(tmp_path, "").daemons()


def test_a_blinds_schedule_with_a_follow_up(tmp_path: Path) -> None:
    config = load(tmp_path, """
[nodes]
[[nodes.jobs]]
id = "blinds-down"
node = "living-blinds"
at = "20:00"
capability = "motor"
params = {direction = "down", duration_s = 5}
then = "blinds-up"

[[nodes.jobs]]
id = "blinds-up"
node = "living-blinds"
at = "07:00"
capability = "motor"
params = {direction = "up", duration_s = 5}
""")
    assert config.nodes is not None
    assert [j.id for j in config.nodes.jobs] == ["blinds-down", "blinds-up"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, """
[nodes]
poll_s = 0.01
pol_s = 3
[[nodes.jobs]]
id = "Bad Id"
node = "x"
capability = "laser"
at = "25:00"
[[nodes.jobs]]
id = "t"
node = "x"
capability = "relay"
reading = "temperature"
""")
    text = "\n".join(found)
    assert "nodes.poll_s: expected a value ≥ 0.2, got 0.01" in text
    assert "nodes.pol_s: unknown key (did you mean 'poll_s'?)" in text
    assert "nodes.jobs[0].id: expected a short id" in text
    assert "nodes.jobs[0].capability: expected one of relay, motor" in text
    assert "nodes.jobs[0].at: expected a local time HH:MM" in text
    assert "nodes.jobs[1].reading: expected exactly one of above or below" in text


def test_follow_ups_must_exist_and_not_loop(tmp_path: Path) -> None:
    found = problems(tmp_path, """
[nodes]
[[nodes.jobs]]
id = "a"
node = "x"
capability = "relay"
at = "10:00"
then = "nothing"
[[nodes.jobs]]
id = "b"
node = "x"
capability = "relay"
after = "c"
delay_s = 5
[[nodes.jobs]]
id = "c"
node = "x"
capability = "relay"
after = "b"
delay_s = 5
[[nodes.jobs]]
id = "d"
node = "x"
capability = "relay"
delay_s = 5
""")
    text = "\n".join(found)
    assert "a: then names no job 'nothing'" in text
    assert "b: its follow-ups loop back to it" in text
    assert "d: delay_s needs a leader" in text
    assert "nodes.offline_after_s" not in text


def test_offline_and_lost_must_exceed_the_poll(tmp_path: Path) -> None:
    text = "\n".join(problems(tmp_path, "[nodes]\npoll_s = 20\noffline_after_s = 10\n"
                                        "lost_after_s = 5\n"))
    assert "nodes.offline_after_s: expected more than poll_s (20.0), got 10.0" in text
    assert "nodes.lost_after_s: expected more than poll_s" in text
