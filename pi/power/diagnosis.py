"""The host plug's verdict for host.json: does an unreachable host still draw working power?

Called by the api daemon on every host.json publish, so it only reads power.json (parsed
again only when the file changed) and never imports python-kasa.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from handshake.util.timeutil import parse_iso
from pi.config import PiConfig
from pi.power.config import PowerConfig

# The dashboard's rule: a public file is stale past 3 × its interval_s.
STALE_FACTOR = 3.0

_cache: dict[Path, tuple[tuple[int, int], Any]] = {}


def host_power(config: PiConfig, state: str, now: float) -> dict[str, Any] | None:
    """``{"plug", "state": drawing|hung|off|unknown, "watts", "at", "stale"}``, or None."""
    power = config.power
    if not isinstance(power, PowerConfig):
        return None
    plug = power.host_plug()
    if plug is None:
        return None
    document = _read(config.public_dir / "power.json")
    entry = None
    fresh = False
    if isinstance(document, dict):
        entry = next((p for p in document.get("plugs") or [] if isinstance(p, dict)
                      and p.get("name") == plug.name), None)
        fresh = _fresh(document, now)
    watts = entry.get("live_w") if entry is not None and fresh else None
    if not isinstance(watts, int | float) or isinstance(watts, bool):
        watts = None
    return {
        "plug": plug.name,
        "state": verdict(None if watts is None else float(watts), state,
                         hung_min_w=power.hung_min_w, off_max_w=power.off_max_w),
        "watts": None if watts is None else float(watts),
        "at": entry.get("last_seen") if entry is not None else None,
        "stale": watts is None,
    }


def verdict(watts: float | None, host_state: str, *, hung_min_w: float, off_max_w: float) -> str:
    """off at or below off_max_w; at or above hung_min_w "hung" while unreachable, else drawing.

    Between the thresholds an unreachable host could be either: "unknown".
    """
    if watts is None:
        return "unknown"
    if watts <= off_max_w:
        return "off"
    if host_state != "unreachable":
        return "drawing"
    return "hung" if watts >= hung_min_w else "unknown"


def _fresh(document: dict[str, Any], now: float) -> bool:
    try:
        generated = parse_iso(str(document["generated_at"])).timestamp()
        interval = float(document["interval_s"])
    except (KeyError, TypeError, ValueError):
        return False
    return now - generated <= STALE_FACTOR * interval


def _read(path: Path) -> Any:
    """power.json, parsed again only when its size or mtime changed; None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        _cache.pop(path, None)
        return None
    key = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    _cache[path] = (key, document)
    return document
