"""The example configs the installers copy to /etc/edgepair parse, and keep DESIGN.md's keys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from handshake.auth import keygen
from handshake.util.secrets import load_secrets as _load_secrets
from host import config as host_config
from pi import config as pi_config
from pi.config import PiSecrets


def load_secrets(path: Path) -> PiSecrets:
    return _load_secrets(path, PiSecrets)

EXAMPLES = Path(__file__).resolve().parent.parent / "scripts" / "config"

# DESIGN.md's config sketches, verbatim: keys and values are contracts.
SKETCH_PI = """
[pi]
address = "192.168.1.20"
state_dir = "/var/lib/edgepair"
secrets_file = "/etc/edgepair/secrets.toml"
[api]
listen = "0.0.0.0:8770"
frontend_dir = "/opt/edgepair/frontend-dist"
allow_anonymous_wake = true
[host]
address = "192.168.1.10"
mac = "AA:BB:CC:DD:EE:FF"
url = "http://192.168.1.10:8771"
heartbeat_interval_s = 5
heartbeat_timeout_s = 2
fall = 3
rise = 2
boot_timeout_s = 180
[wol]
target = "192.168.1.255"
port = 9
[dns]
backend = "builtin"
name = "nas.home.arpa"
ttl_s = 5
listen = "127.0.0.1:5335"
[[power.plugs]]
name = "nas"
address = "192.168.1.30"
port = 80
encryption = "klap"
role = "host"
interval_s = 5
[inbox]
dir = "/srv/edgepair/inbox"
settle_s = 10
[control]
profile = "deye-sg-lp1"
address = "192.168.1.40"
port = 502
device_id = 1
tick_s = 5
"""
SKETCH_HOST = """
[host]
listen = "0.0.0.0:8771"
state_dir = "/var/lib/edgepair-host"
secrets_file = "/etc/edgepair/secrets.toml"
[pi]
url = "http://192.168.1.20:8770"
[inbox]
dir = "/srv/nas/inbox"
[snapshot]
volumes = ["/", "/srv"]
units = ["smbd.service"]
backup_marker = "/srv/backup/.last-success"
"""

# "# key = value" and "# [table]" lines: optional settings shown commented out.
_COMMENTED = re.compile(r"^#\s*(\[\[?[\w.]+\]\]?\s*$|[A-Za-z_]\w*\s+=\s+\S.*$)")


def uncommented(text: str) -> str:
    """The example with every optional setting switched on."""
    return "\n".join(_COMMENTED.sub(r"\1", line) for line in text.splitlines()) + "\n"


def assert_contains(example: Any, sketch: Any, where: str = "") -> None:
    if isinstance(sketch, dict):
        assert isinstance(example, dict), where
        for key, value in sketch.items():
            assert key in example, f"{where}{key} missing from the example"
            assert_contains(example[key], value, f"{where}{key}.")
    elif isinstance(sketch, list) and sketch and isinstance(sketch[0], dict):
        assert isinstance(example, list), where
        assert len(example) >= len(sketch), f"{where} has fewer entries than the sketch"
        for i, (got, want) in enumerate(zip(example, sketch, strict=False)):
            assert_contains(got, want, f"{where}[{i}].")
    else:
        assert example == sketch, f"{where.rstrip('.')}: {example!r} != sketch {sketch!r}"


def test_pi_example_loads() -> None:
    config = pi_config.load(EXAMPLES / "pi.toml")
    assert config.daemons() == ("api", "power", "inbox", "control")
    assert config.pi.address == "192.168.1.20"
    assert config.dns.backend == "builtin"


def test_host_example_loads() -> None:
    config = host_config.load(EXAMPLES / "host.toml")
    assert config.pi.url == "http://192.168.1.20:8770"
    assert config.inbox.dir == Path("/srv/nas/inbox")
    assert config.planner.load_kwh_per_day == 10


@pytest.mark.parametrize(("name", "sketch"), [("pi.toml", SKETCH_PI), ("host.toml", SKETCH_HOST)])
def test_examples_keep_the_design_sketch(name: str, sketch: str) -> None:
    example = tomllib.loads((EXAMPLES / name).read_text())
    assert_contains(example, tomllib.loads(sketch))


def test_optional_pi_settings_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "pi.toml"
    path.write_text(uncommented((EXAMPLES / "pi.toml").read_text()))
    config = pi_config.load(path)
    assert config.wol.interface == "192.168.1.20"
    assert config.schedule.timezone == "Europe/Berlin"
    assert [(w.at, w.days) for w in config.schedule.wake] == [("07:00", (0, 1, 2, 3, 4))]
    assert config.dns.hosts_file == Path("/var/lib/edgepair/failover.hosts")
    assert config.dns.dnsmasq_pidfile is not None
    assert config.mqtt is not None
    assert (config.mqtt.username, config.mqtt.topic_prefix) == ("edgepair", "edgepair/pi")


def test_optional_host_settings_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text(uncommented((EXAMPLES / "host.toml").read_text()))
    config = host_config.load(path)
    assert config.host.max_body_bytes == 4 * 1024 * 1024
    assert config.idle.tcp_ports == (22,)
    assert [(w.at, w.days) for w in config.idle.wake_schedule] == [("07:00", (0, 1, 2, 3, 4))]


def test_secrets_example_names_the_keys_load_secrets_reads(tmp_path: Path) -> None:
    text = uncommented((EXAMPLES / "secrets.example.toml").read_text())
    placeholder = tomllib.loads(text)["handshake_key"]
    path = tmp_path / "secrets.toml"
    path.write_text(text.replace(placeholder, keygen()))
    path.chmod(0o600)
    secrets = load_secrets(path)
    assert len(secrets.handshake_key) == 32
    assert secrets.tapo_username == "you@example.com"
    assert secrets.tapo_password
    assert secrets.pihole_password
    assert secrets.mqtt_password
