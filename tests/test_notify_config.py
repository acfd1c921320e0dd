"""``[[notify]]``, ``[notify_options]`` and ``[notify.NAME]`` credentials: every error named."""

from __future__ import annotations

from pathlib import Path

import pytest

from handshake.errors import ConfigError
from pi import config as pi_config
from tests.helpers import pi_toml, write_secrets


def problems(tmp_path: Path, extra: str) -> list[str]:
    path = pi_toml(tmp_path, extra=extra)
    with pytest.raises(ConfigError) as info:
        pi_config.load(path)
    assert all(p.startswith(str(path)) for p in info.value.problems)
    return info.value.problems


def test_every_target_problem_is_named_in_one_run(tmp_path: Path) -> None:
    found = "\n".join(problems(tmp_path, """
[[notify]]
type = "mqtt"
url = "http://broker:1883"
[[notify]]
type = "ntfy"
url = "mqtt://x"
[[notify]]
type = "email"
url = "http://x"
[[notify]]
type = "webhook"
[[notify]]
type = "webhook"
url = "http://x"
events = ["host_unreachable", "host_gone"]
[notify_options]
debounce_s = -1
"""))
    assert "notify[0].url: expected mqtt://host[:port]" in found
    assert 'notify[0].topic: required for type = "mqtt"' in found
    assert "notify[1].url: expected an http:// or https:// URL" in found
    assert "notify[4].events: expected a non-empty list of host_unreachable" in found
    assert "notify[2].type: expected one of webhook, ntfy, mqtt, got 'email'" in found
    assert 'notify[3].url: required for type = "webhook"' in found
    assert "notify_options.debounce_s" in found


def test_two_targets_need_two_names(tmp_path: Path) -> None:
    found = problems(tmp_path, '[[notify]]\ntype = "webhook"\nurl = "http://a"\n'
                               '[[notify]]\ntype = "webhook"\nurl = "http://b"\n')
    assert any("2 targets named 'webhook'" in p for p in found)


def test_credentials_come_from_the_secrets_file_by_name(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, extra='[[notify]]\ntype = "ntfy"\nname = "phone"\n'
                                   'url = "https://ntfy.example/alarms"\n')
    write_secrets(tmp_path / "secrets.toml",
                  extra='[notify.phone]\ntoken = "tk_1"\nheaders = { X-Site = "home" }\n')
    config = pi_config.load(path)
    credentials = config.secrets().notify["phone"]
    assert credentials.token == "tk_1"
    assert credentials.headers == {"X-Site": "home"}
    assert config.notify[0].label == "phone"
    assert config.notify[0].events[0] == "host_unreachable"  # every event by default
