"""Config: every problem named with file, key and expectation; secrets must be private."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from handshake import command as cli
from handshake.errors import ConfigError
from handshake.util.secrets import load_secrets as _load_secrets
from pi.config import PiSecrets, load, parse_days
from tests.helpers import KEY, pi_toml, write_secrets


def load_secrets(path: Path) -> PiSecrets:
    return _load_secrets(path, PiSecrets)


def test_valid_config_parses_into_frozen_dataclasses(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    assert config.host.fall == 3
    assert config.dns.name == "nas.home.arpa"
    assert config.secrets().handshake_key == KEY
    with pytest.raises(AttributeError, match="immutable"):
        config.host.fall = 4  # type: ignore[misc]
    variant = msgspec.structs.replace(config.host, fall=5)
    assert variant.fall == 5


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, host_extra='heartbeat_intervall_s = 5', dns_extra='pihole_url = 5',
                   extra='[wol2]\nport = 9\n')
    text = path.read_text().replace('mac = "AA:BB:CC:DD:EE:FF"', 'mac = "AA:BB"')
    text = text.replace('backend = "builtin"', 'backend = "bind"')
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = "\n".join(info.value.problems)
    assert f"{path}: host.heartbeat_intervall_s: unknown key (did you mean " \
           "'heartbeat_interval_s'?)" in problems
    assert f"{path}: host.mac: expected a MAC address" in problems
    assert f"{path}: dns.pihole_url: expected a string, got 5" in problems
    assert f"{path}: dns.backend: expected one of builtin, pihole, hostsfile, got 'bind'" in problems
    assert f"{path}: wol2: unknown key" in problems
    assert len(info.value.problems) == 5


def test_missing_required_and_bad_syntax(tmp_path: Path) -> None:
    path = tmp_path / "pi.toml"
    path.write_text("[pi]\naddress = \"10.0.0.300\"\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = "\n".join(info.value.problems)
    assert "pi.address: expected an IP address, got '10.0.0.300'" in problems
    assert "host.mac: required key is missing" in problems
    path.write_text("[pi\naddress = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(path)
    path.write_bytes(b'[pi]\naddress = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"pi\.toml: not UTF-8 text"):
        load(path)
    with pytest.raises(ConfigError, match="is a folder, expected a TOML file"):
        load(tmp_path)


def test_local_names_are_refused(tmp_path: Path) -> None:
    path = pi_toml(tmp_path)
    path.write_text(path.read_text().replace("nas.home.arpa", "nas.local"))
    with pytest.raises(ConfigError, match=r"not \.local"):
        load(path)


def test_secrets_must_not_be_readable_by_others(tmp_path: Path) -> None:
    path = write_secrets(tmp_path / "s.toml", mode=0o644)
    with pytest.raises(ConfigError, match=r"readable by group or others.*chmod 600"):
        load_secrets(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 640"):
        load_secrets(path)
    path.chmod(0o600)
    assert load_secrets(path).handshake_key == KEY
    # Readable and broken: both said at once (no second run after the chmod to learn more).
    write_secrets(path, key_hex="abcd", mode=0o644)
    with pytest.raises(ConfigError) as info:
        load_secrets(path)
    problems = "\n".join(info.value.problems)
    assert "readable by group or others" in problems
    assert "handshake_key: expected at least 32 bytes" in problems


def test_short_or_non_hex_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_secrets(write_secrets(tmp_path / "a.toml", key_hex="ab" * 8))
    with pytest.raises(ConfigError, match="expected hex digits"):
        load_secrets(write_secrets(tmp_path / "b.toml", key_hex="zz" * 32))
    with pytest.raises(ConfigError, match="secrets file not found"):
        load_secrets(tmp_path / "none.toml")


def test_check_config_cli_prints_every_problem(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = pi_toml(tmp_path, host_extra="going_offline_grace_s = 0")
    (tmp_path / "secrets.toml").chmod(0o644)
    assert cli.main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    assert "host.going_offline_grace_s: expected a value ≥ 1, got 0.0" in out.out
    assert "readable by group or others" in out.out
    assert "2 problem(s)" in out.err
    assert "Traceback" not in out.out + out.err


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(pi_toml(tmp_path))]) == 0
    assert "ok (pi config)" in capsys.readouterr().out


def test_keygen_prints_64_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keygen"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(bytes.fromhex(key)) == 32


def test_schedule_entries(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, extra='[[schedule.wake]]\nat = "07:00"\ndays = "mon-fri"\n'
                                   '[[schedule.wake]]\nat = "25:00"\ndays = "someday"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = "\n".join(info.value.problems)
    assert "schedule.wake[1].at: expected a local time HH:MM" in problems
    assert "schedule.wake[1].days: expected days like" in problems
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(("text", "days"), [
    ("mon-fri", (0, 1, 2, 3, 4)), ("sat,sun", (5, 6)), ("daily", tuple(range(7))),
    ("fri-mon", (0, 4, 5, 6)), ("wed", (2,)), ("tues", None), ("", None),
])
def test_parse_days(text: str, days: tuple[int, ...] | None) -> None:
    if days is None:
        with pytest.raises(ValueError, match=text or "^$"):
            parse_days(text)
    else:
        assert parse_days(text) == days


def test_mqtt_section_problems_are_named(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, anonymous_wake=False, extra="""
[mqtt]
port = 0
topic_prefix = "edgepair/#"
allow_wake = true
ca_file = "ca.pem"
""")
    with pytest.raises(ConfigError) as caught:
        load(path)
    text = "\n".join(caught.value.problems)
    assert "mqtt.port: expected a value ≥ 1, got 0" in text
    assert "mqtt.topic_prefix: expected MQTT topic levels without + or #" in text
    path = pi_toml(tmp_path, anonymous_wake=False, extra="[mqtt]\nallow_wake = true\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert "mqtt.allow_wake: expected api.allow_anonymous_wake = true" in caught.value.problems[0]
    path = pi_toml(tmp_path, extra='[mqtt]\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert "mqtt.ca_file: expected tls = true" in caught.value.problems[0]
    config = load(pi_toml(tmp_path, extra="[mqtt]\n"))
    assert config.mqtt is not None
    assert "mqtt" in config.daemons()
