"""The host's metadata snapshot: volumes, units, last backup, and one health summary."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handshake.util.timeutil import iso
from host.config import SnapshotSection

log = logging.getLogger(__name__)

Runner = Callable[..., subprocess.CompletedProcess[str]]

# systemctl answers in milliseconds; a hung D-Bus must not hold up a shutdown for long.
SYSTEMCTL_TIMEOUT_S = 5.0
# Above this a volume is reported as nearly full (df's Use%).
VOLUME_FULL_PERCENT = 90.0
# A nightly backup that has not succeeded for two days is worth a look.
BACKUP_MAX_AGE_S = 2 * 24 * 3600.0

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
UPTIME_PATH = Path("/proc/uptime")
# Stands in for the kernel's boot id where there is none: at least it changes per process.
_PROCESS_BOOT_ID = str(uuid.uuid4())


def build_snapshot(config: SnapshotSection, *, run: Runner = subprocess.run,
                   clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Collect the snapshot; never raises for a missing volume, unit, marker or systemctl."""
    now = clock()
    snapshot: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "uptime_s": read_uptime(),
        "boot_id": read_boot_id(),
        "taken_at": iso(now),
        "volumes": [volume_usage(path) for path in config.volumes],
        "units": unit_states(config.units, run=run),
        "backup": backup_status(config.backup_marker, now),
    }
    snapshot["health"] = health_summary(snapshot)
    return snapshot


def health_summary(snapshot: dict[str, Any]) -> str:
    """``"ok"`` or ``"degraded: <why>; <why>"`` from a snapshot's volumes, units and backup."""
    why: list[str] = []
    for vol in snapshot.get("volumes", []):
        if "error" in vol:
            why.append(f"volume {vol['path']} {vol['error']}")
        elif vol["used_percent"] > VOLUME_FULL_PERCENT:
            why.append(f"volume {vol['path']} {vol['used_percent']:.0f} % full")
    for unit in snapshot.get("units", []):
        if unit["active_state"] == "failed":
            why.append(f"{unit['name']} failed")
        elif unit.get("load_state") == "not-found":
            why.append(f"{unit['name']} not found")
    backup = snapshot.get("backup")
    if backup is not None:
        if "error" in backup:
            why.append(f"backup marker {backup['marker']} {backup['error']}")
        elif backup["age_s"] > BACKUP_MAX_AGE_S:
            why.append(f"last backup {backup['age_s'] / 86400:.1f} days ago")
    return "degraded: " + "; ".join(why) if why else "ok"


def volume_usage(path: str) -> dict[str, Any]:
    """Sizes as ``df`` shows them (used_percent over the space a user can fill)."""
    try:
        usage = shutil.disk_usage(path)
    except FileNotFoundError:
        return {"path": path, "error": "not found"}
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    usable = usage.used + usage.free
    return {
        "path": path,
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "used_percent": round(100.0 * usage.used / usable, 1) if usable else 0.0,
    }


def unit_states(units: tuple[str, ...], *, run: Runner = subprocess.run) -> list[dict[str, Any]]:
    """Load/active/sub state per unit; "unknown" when systemctl is missing, fails or hangs."""
    states: list[dict[str, Any]] = []
    hung = False
    for name in units:
        props: dict[str, str] = {}
        if not hung:
            try:
                props = _systemctl_show(name, run)
            except subprocess.TimeoutExpired:
                # One hang is enough: don't pay the timeout again for every unit.
                log.warning("systemctl did not answer within %.0f s; unit states unknown",
                            SYSTEMCTL_TIMEOUT_S)
                hung = True
        states.append({
            "name": name,
            "active_state": props.get("ActiveState", "unknown"),
            "sub_state": props.get("SubState", "unknown"),
            "load_state": props.get("LoadState", "unknown"),
        })
    return states


def backup_status(marker: Path | None, now: float) -> dict[str, Any] | None:
    """When the backup marker file was last touched; None when no marker is configured."""
    if marker is None:
        return None
    try:
        mtime = marker.stat().st_mtime
    except FileNotFoundError:
        return {"marker": str(marker), "error": "missing"}
    except OSError as exc:
        return {"marker": str(marker), "error": exc.strerror or str(exc)}
    return {"marker": str(marker), "last_success": iso(mtime),
            "age_s": round(max(0.0, now - mtime), 1)}


def read_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """The kernel's boot id; a random id per process where the kernel offers none."""
    try:
        return path.read_text().strip() or _PROCESS_BOOT_ID
    except OSError:
        return _PROCESS_BOOT_ID


def read_uptime(path: Path = UPTIME_PATH) -> float | None:
    """Seconds since boot, suspend included; None where ``/proc/uptime`` is absent."""
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _systemctl_show(unit: str, run: Runner) -> dict[str, str]:
    """``systemctl show`` as a dict; empty when systemctl is missing or fails."""
    argv = ["systemctl", "show", "-p", "LoadState", "-p", "ActiveState", "-p", "SubState",
            "--", unit]
    try:
        result = run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S,
                     check=False)
    except OSError as exc:
        log.debug("cannot run systemctl: %s", exc)
        return {}
    if result.returncode != 0:
        log.debug("systemctl show %s failed (%s): %s", unit, result.returncode,
                  (result.stderr or "").strip())
        return {}
    # KEY=VALUE lines rather than --value: their order follows systemd, not our argv.
    pairs = (line.partition("=") for line in (result.stdout or "").splitlines())
    return {key: value for key, sep, value in pairs if sep and value}
