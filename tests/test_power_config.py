"""The [power] section: defaults, every problem named with file and key, secrets required."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from handshake.errors import ConfigError, FatalError
from pi import config as pi_config
from pi.power import daemon
from pi.power.config import PowerConfig
from tests.e2e import ROOT
from tests.fakes.power_site import PlugSpec, power_config
from tests.helpers import pi_toml


def test_defaults_and_plugs(tmp_path: Path) -> None:
    path = power_config(tmp_path, [PlugSpec("nas", port=8080, role="host", interval_s=5),
                                   PlugSpec("tv", encryption="aes", interval_s=2.5)])
    power = pi_config.load(path).power
    assert isinstance(power, PowerConfig)
    assert (power.commit_interval_s, power.raw_retention_days, power.minute_retention_days) == (
        60.0, 14, 400)
    assert power.host_plug() is not None
    assert power.host_plug().name == "nas"  # type: ignore[union-attr]
    tv = power.plug("tv")
    assert tv is not None
    assert (tv.encryption, tv.role, tv.interval_s, tv.port) == ("aes", "other", 2.5, 9)
    assert power.off_max_w <= power.hung_min_w


def test_every_problem_is_named(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, extra="""
[power]
commit_intervall_s = 60
[[power.plugs]]
name = "nas"
address = "not an address!"
encryption = "rsa"
role = "boss"
interval_s = 0
""")
    with pytest.raises(ConfigError) as info:
        pi_config.load(path)
    text = "\n".join(info.value.problems)
    for expected in ("power.plugs[0].address: expected an IP address or host name",
                     "power.plugs[0].encryption: expected one of klap, aes",
                     "power.plugs[0].role: expected one of host, other",
                     "power.plugs[0].interval_s: expected a value ≥ 0.05",
                     "power.commit_intervall_s: unknown key (did you mean 'commit_interval_s'?)"):
        assert expected in text, text
    assert all(p.startswith(str(path)) for p in info.value.problems)


def test_rules_across_keys_are_checked_once_each_key_is_valid(tmp_path: Path) -> None:
    # Checked on values the user wrote, never on a default standing in for a broken one.
    path = pi_toml(tmp_path, extra="""
[power]
raw_retention_days = 30
minute_retention_days = 30
off_max_w = 50
hung_min_w = 10
[[power.plugs]]
name = "nas"
address = "192.168.1.30"
[[power.plugs]]
name = "nas"
address = "192.168.1.31"
role = "host"
[[power.plugs]]
name = "nas2"
address = "192.168.1.32"
role = "host"
""")
    with pytest.raises(ConfigError) as info:
        pi_config.load(path)
    text = "\n".join(info.value.problems)
    for expected in ("power.plugs: plug name 'nas' is used more than once",
                     "power.plugs: at most one plug may have role = \"host\"",
                     "power.off_max_w: expected a value ≤ hung_min_w",
                     "power.minute_retention_days: expected more than raw_retention_days (30)"):
        assert expected in text, text


def test_a_power_section_without_plugs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"power.plugs: expected at least one"):
        pi_config.load(pi_toml(tmp_path, extra="[power]\ncommit_interval_s = 30\n"))


async def test_daemon_refuses_to_start_without_tapo_credentials(tmp_path: Path) -> None:
    config = pi_config.load(power_config(tmp_path, [PlugSpec("nas")], credentials=False))
    with pytest.raises(ConfigError) as info:
        await daemon.run(config, ready=lambda: None, kick=lambda name: None)
    secrets = str(config.pi.secrets_file)
    assert [p.split(": ")[:2] for p in info.value.problems] == [
        [secrets, "tapo_username"], [secrets, "tapo_password"]]


async def test_daemon_needs_a_power_section(tmp_path: Path) -> None:
    config = pi_config.load(pi_toml(tmp_path))
    with pytest.raises(ConfigError, match=r"needs a \[power\] section"):
        await asyncio.wait_for(daemon.run(config, ready=lambda: None, kick=lambda n: None), 5)


def test_pi_run_power_without_credentials_says_so_without_a_traceback(tmp_path: Path) -> None:
    path = power_config(tmp_path, [PlugSpec("nas")], credentials=False)
    result = subprocess.run([sys.executable, "-m", "handshake", "pi", "run", "power", "--config",
                             str(path)], cwd=ROOT, capture_output=True, timeout=30, check=False)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "tapo_username: required by [power]" in err
    assert "Traceback" not in err


def test_config_modules_stay_light() -> None:
    """check-config and the api daemon import the power config and diagnosis, never kasa."""
    code = ("import sys, pi.config, pi.power.config, pi.power.diagnosis, pi.api; "
            "print('kasa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         timeout=30, check=True)
    assert out.stdout.decode().strip() == "False"


async def test_an_unusable_history_path_is_a_clear_fatal_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = pi_config.load(power_config(tmp_path, [PlugSpec("nas")],
                                         database=str(tmp_path / "a-file" / "power.sqlite3")))
    with pytest.raises(FatalError, match=r"cannot open the power history .*a-file"):
        await daemon.run(config, ready=lambda: None, kick=lambda name: None)
