"""``[idle]`` in the host config: defaults, every key, and a precise error for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from handshake.errors import ConfigError
from handshake.util import weekly
from host import config as host_config
from host.idle.config import IdleConfig
from pi import config as pi_config


def host_toml(tmp_path: Path, idle: str) -> Path:
    path = tmp_path / "host.toml"
    path.write_text(f'[pi]\nurl = "http://127.0.0.1:8770"\n[idle]\n{idle}\n')
    return path


def problems(tmp_path: Path, idle: str) -> list[str]:
    path = host_toml(tmp_path, idle)
    with pytest.raises(ConfigError) as info:
        host_config.load(path)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p.removeprefix(prefix) for p in info.value.problems]


def test_defaults_keep_the_host_awake_and_suspend_through_systemd(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text('[pi]\nurl = "http://127.0.0.1:8770"\n')
    idle = host_config.load(path).idle
    assert idle == IdleConfig()
    assert idle.enabled is False
    assert (idle.idle_after_s, idle.check_interval_s, idle.min_sleep_s, idle.wakeup_delta_s) == \
        (1800.0, 60.0, 900.0, 120.0)
    assert idle.suspend_command == ("systemctl", "suspend")
    assert (idle.smb, idle.users, idle.load_above, idle.command) == (False, False, None, None)
    assert (idle.processes, idle.tcp_ports, idle.wake_timers, idle.wake_schedule) == ((),) * 4


def test_every_key(tmp_path: Path) -> None:
    idle = host_config.load(host_toml(tmp_path, """
enabled = true
idle_after_s = 600
check_interval_s = 30
suspend_command = ["/usr/bin/systemctl", "suspend-then-hibernate"]
dry_run = true
min_sleep_s = 300
wakeup_delta_s = 60
smb = true
users = true
load_above = 1.5
processes = ["rsync", "borg"]
tcp_ports = [22, 445]
command = ["/usr/local/bin/busy", "--quiet"]
wake_timers = ["backup.timer", "btrfs-scrub@-.timer"]
wake_schedule = [{at = "07:00", days = "mon-fri"}, {at = "09:30", days = "sat,sun"}]
timezone = "Europe/Berlin"
""")).idle
    assert (idle.enabled, idle.dry_run, idle.smb, idle.users) == (True,) * 4
    assert idle.suspend_command == ("/usr/bin/systemctl", "suspend-then-hibernate")
    assert idle.load_above == 1.5
    assert idle.processes == ("rsync", "borg")
    assert idle.tcp_ports == (22, 445)
    assert idle.command == ("/usr/local/bin/busy", "--quiet")
    assert idle.wake_timers == ("backup.timer", "btrfs-scrub@-.timer")
    assert [(w.at, w.days) for w in idle.wake_schedule] == [("07:00", (0, 1, 2, 3, 4)),
                                                            ("09:30", (5, 6))]
    assert idle.timezone == "Europe/Berlin"


def test_all_bad_values_are_reported_at_once(tmp_path: Path) -> None:
    got = problems(tmp_path, """
enabled = "yes"
idle_after_s = -1
check_interval_s = 0
suspend_command = []
command = [""]
min_sleep_s = "long"
wakeup_delta_s = 100000
load_above = 0
processes = ["bin/rsync"]
tcp_ports = [0, 445, 70000]
wake_timers = ["backup.service"]
wake_schedule = [{at = "25:00", days = "someday"}, {at = "07:00", when = "x"}]
timezone = "Mars/Olympus"
idle_afer_s = 5
""")
    assert got == [
        "idle.idle_afer_s: unknown key (did you mean 'idle_after_s'?); known keys: "
        "check_interval_s, command, dry_run, enabled, idle_after_s, load_above, min_sleep_s, "
        "processes, smb, smb_config, suspend_command, tcp_ports, timezone, users, wake_schedule, "
        "wake_timers, wakeup_delta_s",
        "idle.enabled: expected true or false, got 'yes'",
        "idle.idle_after_s: expected a value ≥ 0, got -1.0",
        "idle.check_interval_s: expected a value ≥ 0.05, got 0.0",
        "idle.suspend_command: expected a command as a non-empty list of non-empty strings, "
        "like [\"systemctl\", \"suspend\"], got []",
        "idle.min_sleep_s: expected a number, got 'long'",
        "idle.wakeup_delta_s: expected a value ≤ 86400, got 100000.0",
        "idle.load_above: expected a value > 0, got 0.0",
        "idle.processes: expected process names (no \"/\"), got ['bin/rsync']",
        "idle.tcp_ports: expected ports 1-65535, got [0, 445, 70000]",
        "idle.command: expected a command as a non-empty list of non-empty strings, "
        "like [\"systemctl\", \"suspend\"], got ['']",
        "idle.wake_timers: expected systemd timer units (name.timer), got ['backup.service']",
        "idle.wake_schedule[0].at: expected a local time HH:MM (24 h), got '25:00'",
        "idle.wake_schedule[0].days: expected days like \"mon-fri\" or \"sat,sun\", "
        "got 'someday'",
        "idle.wake_schedule[1].when: unknown key; known keys: at, days",
        "idle.timezone: expected an IANA time zone like \"Europe/Berlin\", got 'Mars/Olympus'",
    ]


@pytest.mark.parametrize(("line", "problem"), [
    ("suspend_command = \"systemctl suspend\"",
     "idle.suspend_command: expected a list of strings, got 'systemctl suspend'"),
    ("tcp_ports = [\"445\"]", "idle.tcp_ports: expected a list of integers, got ['445']"),
    ("processes = \"rsync\"", "idle.processes: expected a list of strings, got 'rsync'"),
    ("wake_schedule = {at = \"07:00\"}", "idle.wake_schedule: expected an array of tables "
                                        "([[idle.wake_schedule]])"),
    ("smb = 1", "idle.smb: expected true or false, got 1"),
])
def test_wrong_types_name_the_key(tmp_path: Path, line: str, problem: str) -> None:
    assert problems(tmp_path, line) == [problem]


def test_min_sleep_below_wakeup_delta_is_a_contradiction(tmp_path: Path) -> None:
    assert problems(tmp_path, "enabled = true\nmin_sleep_s = 60\nwakeup_delta_s = 120") == [
        "idle.min_sleep_s: expected a value ≥ wakeup_delta_s (120) or 0, got 60"]
    # Switched off, the same numbers stand (nothing acts on them).
    assert host_config.load(host_toml(tmp_path, "min_sleep_s = 60\nwakeup_delta_s = 120"))


def test_pi_config_still_reads_its_schedule_from_the_shared_weekly_module() -> None:
    assert pi_config.WakeTime is weekly.WakeTime
    assert pi_config.parse_days("fri-mon") == (0, 4, 5, 6)
