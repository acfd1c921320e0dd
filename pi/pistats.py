"""The Pi's own health for ``pi.json``: load, memory, CPU temperature, disk, versions."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from handshake import __version__, documents
from handshake.documents import PiDocument, schema_of
from handshake.util.timeutil import iso

PI_SCHEMA = schema_of(PiDocument)
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
MEMINFO = Path("/proc/meminfo")
UPTIME = Path("/proc/uptime")


def collect(state_dir: Path, daemons: tuple[str, ...], interval_s: float,
            now: float | None = None, *, pihole: bool = False,
            grace_until: float | None = None,
            shares: dict[str, Path] | None = None,
            backup: dict[str, Any] | None = None) -> PiDocument:
    """One pi.json document; anything the platform lacks is null, never an error.

    ``pihole``: whether ``[pihole]`` is configured (the api daemon then writes
    pihole.json), so the dashboard can tell "not configured" from "not yet".
    """
    now = time.time() if now is None else now
    return PiDocument(
        generated_at=iso(now) or "",
        interval_s=interval_s,
        hostname=os.uname().nodename,
        uptime_s=_uptime(),
        load=list(os.getloadavg()),
        cpus=os.cpu_count(),
        memory=_memory(),
        temperature_c=_temperature(),
        disk=_disk(state_dir),
        daemons=daemon_states(state_dir / "public", daemons, now, grace_until),
        pihole_configured=pihole,
        shares={name: _share(path) for name, path in (shares or {}).items()},
        backup=backup,
    )


# The public file each daemon besides the api (this process) keeps fresh.
DAEMON_FILES = {"power": "power.json", "inbox": "inbox.json", "control": "control.json",
                "node": "nodes.json"}
# Just after start, a daemon without a file yet is not known to be down ("running": null).
STARTUP_GRACE_S = 60.0


def daemon_states(public: Path, daemons: tuple[str, ...], now: float,
                  grace_until: float | None = None) -> dict[str, Any]:
    """Each configured daemon: running or not, judged by its own public file's age.

    With one systemd unit per daemon they are separate processes: only the api is this
    one, the others show that they live by keeping their file fresh. Before
    ``grace_until`` a daemon that has written nothing yet is unknown (null), not down.
    """
    out: dict[str, Any] = {}
    for name in daemons:
        if name == "api":
            out[name] = {"version": __version__, "pid": os.getpid(), "running": True,
                         "last_seen": iso(now)}
            continue
        seen = documents.header(public / DAEMON_FILES.get(name, f"{name}.json"))
        running: bool | None = seen is not None and not seen.stale(now)
        if seen is None and grace_until is not None and now < grace_until:
            running = None
        out[name] = {"version": __version__, "running": running,
                     "last_seen": None if seen is None else seen.generated_at}
    return out


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


def _share(path: Path) -> dict[str, Any]:
    """A share's folder: its file system's space, or why it cannot be measured."""
    usage = _disk(path)
    if usage is None:
        return {"path": str(path), "error": "not found" if not path.exists() else "not readable"}
    return usage


def _disk(path: Path) -> dict[str, Any] | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"path": str(path), "total_bytes": usage.total, "used_bytes": usage.used,
            "free_bytes": usage.free}
