"""``edgepair host idle status`` and ``edgepair host sleep --dry-run`` through the real main()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host.cli import main
from tests.helpers import write_secrets


def config(tmp_path: Path) -> Path:
    secrets = write_secrets(tmp_path / "secrets.toml")
    path = tmp_path / "host.toml"
    path.write_text(f"""
[host]
state_dir = "{tmp_path / 'state'}"
secrets_file = "{secrets}"
[pi]
url = "http://127.0.0.1:9"
[idle]
enabled = true
dry_run = true
processes = ["no-such-process-name"]
tcp_ports = [1]
wake_schedule = [{{at = "07:00", days = "daily"}}]
timezone = "UTC"
""")
    return path


def test_idle_status_prints_every_check_and_the_next_wake(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["idle", "status", "--config", str(config(tmp_path)), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = {c["name"]: c["verdict"] for c in doc["checks"]}
    assert names["processes"] == "idle"
    assert names["tcp_ports"] == "idle"
    assert "activity" in names
    assert doc["next_wake"]["source"] == "wake_schedule 07:00"
    assert main(["idle", "status", "--config", str(config(tmp_path))]) == 0
    text = capsys.readouterr().out
    assert "processes" in text
    assert "07:00" in text


def test_sleep_dry_run_suspends_nothing_and_says_what_it_would_do(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The Pi at 127.0.0.1:9 does not answer: a dry run must not even try to tell it.
    assert main(["sleep", "--dry-run", "--config", str(config(tmp_path))]) == 0
    out = capsys.readouterr()
    assert "would suspend now" in out.out + out.err
