"""The Pi's own health for ``pi.json``: load, memory, CPU temperature, disk, versions."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from handshake import __version__
from handshake.timeutil import iso

PI_SCHEMA = "edgepair.pi/1"
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
MEMINFO = Path("/proc/meminfo")
UPTIME = Path("/proc/uptime")


def collect(state_dir: Path, daemons: tuple[str, ...], interval_s: float,
            now: float | None = None) -> dict[str, Any]:
    """One pi.json document; anything the platform lacks is null, never an error."""
    now = time.time() if now is None else now
    return {
        "schema": PI_SCHEMA,
        "generated_at": iso(now),
        "interval_s": interval_s,
        "hostname": os.uname().nodename,
        "uptime_s": _uptime(),
        "load": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "memory": _memory(),
        "temperature_c": _temperature(),
        "disk": _disk(state_dir),
        "daemons": {name: {"version": __version__, "pid": os.getpid()} for name in daemons},
    }


def _uptime() -> float | None:
    try:
        return float(UPTIME.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _memory() -> dict[str, int] | None:
    try:
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    return {"total_bytes": total, "available_bytes": available, "used_bytes": total - available}


def _temperature() -> float | None:
    try:
        return round(int(THERMAL.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def _disk(path: Path) -> dict[str, Any] | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"path": str(path), "total_bytes": usage.total, "used_bytes": usage.used,
            "free_bytes": usage.free}
