"""``edgepair power export``: minutes or days as CSV or JSON; clear errors, no tracebacks."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pi import config as pi_config
from pi.power import cli
from pi.power.history import History, Sample
from tests.e2e import ROOT
from tests.fakes.power_site import PlugSpec, power_config
from tests.helpers import pi_toml

T0 = datetime(2026, 5, 1, 23, 59, tzinfo=UTC).timestamp()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = power_config(tmp_path, [PlugSpec("nas", role="host")])
    history = History(pi_config.load(path).private_dir / "power.sqlite3", tz=UTC)
    history.open()
    # 23:59:00-23:59:50 at 60 W with the plug's counter, 00:00:00-00:00:50 at 120 W
    samples = [Sample("nas", round((T0 + 10 * k) * 1000), 60_000 if k < 6 else 120_000, 10_000,
                      today_wh=500 if k < 6 else 1, month_wh=None) for k in range(12)]
    history.commit(samples, T0 + 120)
    history.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_minutes_as_csv(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--plug", "nas", "--from", "2026-05-01", "--to", "2026-05-02",
                         "--config", str(site))
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["start"], r["avg_w"], r["wh"], r["samples"]) for r in rows] == [
        ("2026-05-01T23:59:00.000Z", "60.0", "1.0", "6"),
        ("2026-05-02T00:00:00.000Z", "120.0", "2.0", "6")]


def test_days_as_json(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--plug", "nas", "--from", "2026-05-02", "--to", "2026-05-02",
                       "--json", "--resolution", "day", "--config", str(site))
    assert code == 0
    doc = json.loads(out)
    assert (doc["from"], doc["to"], doc["resolution"]) == (
        "2026-05-02T00:00:00.000Z", "2026-05-03T00:00:00.000Z", "day")
    assert doc["rows"] == [{"date": "2026-05-02", "plug": "nas", "kwh": 0.001, "source": "plug",
                            "integrated_kwh": 0.002, "plug_kwh": 0.001, "samples": 6,
                            "covered_s": 60.0}]


def test_an_iso_time_range(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--plug", "nas", "--from", "2026-05-02T00:00:00Z",
                       "--to", "2026-05-02T00:01:00Z", "--config", str(site))
    assert code == 0
    assert [r["start"] for r in csv.DictReader(io.StringIO(out))] == ["2026-05-02T00:00:00.000Z"]


@pytest.mark.parametrize(("args", "message"), [
    (["--plug", "fridge", "--from", "2026-05-01", "--to", "2026-05-02"],
     "no history for plug 'fridge'; known plugs: nas"),
    (["--plug", "nas", "--from", "May 1st", "--to", "2026-05-02"], "expected a date YYYY-MM-DD"),
    (["--plug", "nas", "--from", "2026-05-03", "--to", "2026-05-01"], "must not be before"),
    (["--plug", "nas", "--from", "2026-05-01T00:00:00", "--to", "2026-05-02"], "needs a time zone"),
])
def test_bad_arguments(site: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                       message: str) -> None:
    code, out, err = run(capsys, *args, "--config", str(site))
    assert (code, out) == (2, "")
    assert message in err


def test_no_history_or_no_power_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fresh = power_config(tmp_path / "a", [PlugSpec("nas")])
    code, _, err = run(capsys, "--plug", "nas", "--from", "2026-05-01", "--to", "2026-05-02",
                       "--config", str(fresh))
    assert code == 2
    assert "no power history at" in err
    code, _, err = run(capsys, "--plug", "nas", "--from", "2026-05-01", "--to", "2026-05-02",
                       "--config", str(pi_toml(tmp_path / "b")))
    assert code == 2
    assert "has no [power] section" in err


def test_through_the_edgepair_command(site: Path) -> None:
    base = [sys.executable, "-m", "handshake", "power", "export", "--plug", "nas", "--from",
            "2026-05-01", "--config", str(site)]
    ok = subprocess.run([*base, "--to", "2026-05-02", "--json"], cwd=ROOT, capture_output=True,
                        timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["rows"]) == 2
    bad = subprocess.run([*base, "--to", "yesterday"], cwd=ROOT, capture_output=True, timeout=30,
                         check=False)
    assert bad.returncode == 2
    assert b"Traceback" not in bad.stderr
