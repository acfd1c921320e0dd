"""The host's metadata snapshot: volumes, units via a fake systemctl, backup marker, health."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from host.config import SnapshotSection
from host.snapshot import (
    BACKUP_MAX_AGE_S,
    build_snapshot,
    health_summary,
    read_boot_id,
    read_uptime,
    unit_states,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeSystemctl:
    """Answers ``systemctl show`` from a table; records every argv."""

    def __init__(self, states: dict[str, tuple[str, str, str]], *, rc: int = 0,
                 raises: BaseException | None = None) -> None:
        self.states = states
        self.rc = rc
        self.raises = raises
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        assert kwargs["timeout"] > 0, "systemctl must be bounded by a timeout"
        if self.raises is not None:
            raise self.raises
        load, active, sub = self.states.get(argv[-1], ("not-found", "inactive", "dead"))
        out = f"LoadState={load}\nActiveState={active}\nSubState={sub}\n"
        return subprocess.CompletedProcess(argv, self.rc, out if self.rc == 0 else "", "boom")


def test_snapshot_has_every_part(tmp_path: Path) -> None:
    marker = tmp_path / ".last-success"
    marker.touch()
    os.utime(marker, (NOW - 3600, NOW - 3600))
    run = FakeSystemctl({"smbd.service": ("loaded", "active", "running")})
    config = SnapshotSection(volumes=(str(tmp_path),), units=("smbd.service",),
                             backup_marker=marker)

    snap = build_snapshot(config, run=run, clock=lambda: NOW)

    assert snap["taken_at"] == "2026-01-01T00:00:00.000Z"
    assert snap["hostname"]
    assert snap["boot_id"] == read_boot_id()
    assert snap["uptime_s"] is None or snap["uptime_s"] > 0
    [vol] = snap["volumes"]
    assert vol["path"] == str(tmp_path)
    assert vol["total_bytes"] > 0
    assert vol["used_bytes"] + vol["free_bytes"] <= vol["total_bytes"]
    assert 0 <= vol["used_percent"] <= 100
    assert snap["units"] == [{"name": "smbd.service", "active_state": "active",
                              "sub_state": "running", "load_state": "loaded"}]
    assert snap["backup"] == {"marker": str(marker), "last_success": "2025-12-31T23:00:00.000Z",
                              "age_s": 3600.0}
    assert run.calls == [["systemctl", "show", "-p", "LoadState", "-p", "ActiveState",
                          "-p", "SubState", "--", "smbd.service"]]
    # The tmp volume's fill level is the machine's business; units and backup are fine.
    assert snap["health"] == health_summary(snap)
    assert "smbd" not in snap["health"]
    assert "backup" not in snap["health"]


def test_missing_volume_is_reported_not_raised(tmp_path: Path) -> None:
    missing = str(tmp_path / "not-mounted")
    snap = build_snapshot(SnapshotSection(volumes=(missing,)), run=FakeSystemctl({}))
    assert snap["volumes"] == [{"path": missing, "error": "not found"}]
    assert snap["health"] == f"degraded: volume {missing} not found"


def test_failed_unit_degrades_health() -> None:
    run = FakeSystemctl({"smbd.service": ("loaded", "active", "running"),
                         "backup.service": ("loaded", "failed", "failed")})
    snap = build_snapshot(SnapshotSection(volumes=(), units=("smbd.service", "backup.service")),
                          run=run)
    assert [u["active_state"] for u in snap["units"]] == ["active", "failed"]
    assert snap["health"] == "degraded: backup.service failed"


def test_unit_that_does_not_exist_degrades_health() -> None:
    snap = build_snapshot(SnapshotSection(volumes=(), units=("typo.service",)),
                          run=FakeSystemctl({}))
    assert snap["units"][0]["load_state"] == "not-found"
    assert snap["health"] == "degraded: typo.service not found"


@pytest.mark.parametrize("run", [
    FakeSystemctl({}, raises=FileNotFoundError(2, "No such file", "systemctl")),
    FakeSystemctl({}, rc=1),
], ids=["missing-binary", "failing"])
def test_systemctl_missing_or_failing_gives_unknown(run: FakeSystemctl) -> None:
    snap = build_snapshot(SnapshotSection(volumes=(), units=("smbd.service",)), run=run)
    assert snap["units"] == [{"name": "smbd.service", "active_state": "unknown",
                              "sub_state": "unknown", "load_state": "unknown"}]
    assert snap["health"] == "ok"


def test_hung_systemctl_is_asked_once(caplog: pytest.LogCaptureFixture) -> None:
    run = FakeSystemctl({}, raises=subprocess.TimeoutExpired("systemctl", 5))
    states = unit_states(("a.service", "b.service", "c.service"), run=run)
    assert [s["active_state"] for s in states] == ["unknown"] * 3
    assert len(run.calls) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_real_systemctl_never_crashes() -> None:
    """Whatever this machine has (no systemd in a container), the snapshot is built."""
    states = unit_states(("edgepair-test-nonexistent.service",))
    assert states[0]["name"] == "edgepair-test-nonexistent.service"


def test_old_backup_degrades_health(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    os.utime(marker, (NOW - 3 * 86400, NOW - 3 * 86400))
    snap = build_snapshot(SnapshotSection(volumes=(), backup_marker=marker), clock=lambda: NOW)
    assert snap["backup"]["age_s"] == 3 * 86400
    assert snap["health"] == "degraded: last backup 3.0 days ago"


def test_missing_backup_marker(tmp_path: Path) -> None:
    marker = tmp_path / "never-written"
    snap = build_snapshot(SnapshotSection(volumes=(), backup_marker=marker))
    assert snap["backup"] == {"marker": str(marker), "error": "missing"}
    assert snap["health"] == f"degraded: backup marker {marker} missing"


def test_no_backup_marker_configured() -> None:
    snap = build_snapshot(SnapshotSection(volumes=()))
    assert snap["backup"] is None
    assert snap["health"] == "ok"


def test_health_summary_lists_every_reason() -> None:
    snap = {
        "volumes": [{"path": "/srv", "used_percent": 93.4}, {"path": "/", "used_percent": 90.0}],
        "units": [{"name": "smbd.service", "active_state": "failed"}],
        "backup": {"marker": "/m", "age_s": BACKUP_MAX_AGE_S + 1},
    }
    assert health_summary(snap) == ("degraded: volume /srv 93 % full; smbd.service failed; "
                                    "last backup 2.0 days ago")


def test_boot_id_and_uptime_fallbacks(tmp_path: Path) -> None:
    (tmp_path / "boot_id").write_text("b75e0dcd-5599-4e58-856b-7869166b6221\n")
    assert read_boot_id(tmp_path / "boot_id") == "b75e0dcd-5599-4e58-856b-7869166b6221"
    fallback = read_boot_id(tmp_path / "absent")
    assert fallback == read_boot_id(tmp_path / "absent"), "stable within one process"
    (tmp_path / "uptime").write_text("430.10 768.09\n")
    assert read_uptime(tmp_path / "uptime") == 430.10
    assert read_uptime(tmp_path / "absent") is None

