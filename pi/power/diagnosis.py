"""The host plug's verdict for host.json: does an unreachable host still draw working power?

Called by the api daemon on every host.json publish, so it only reads power.json (parsed
again only when the file changed) and never imports python-kasa.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from handshake import documents
from handshake.documents import PowerDocument
from pi.config import PiConfig
from pi.power.config import PowerConfig

_cache: dict[Path, tuple[tuple[int, int], PowerDocument | None]] = {}


def host_power(config: PiConfig, state: str, now: float) -> dict[str, Any] | None:
    """``{"plug", "state": drawing|hung|off|unknown, "watts", "at", "stale"}``, or None."""
    power = config.power
    if not isinstance(power, PowerConfig):
        return None
    plug = power.host_plug()
    if plug is None:
        return None
    document = _read(config.public_dir / documents.FILES[PowerDocument])
    entry = None if document is None else document.plug(plug.name)
    fresh = document is not None and not document.stale(now)
    watts = entry.live_w if entry is not None and fresh else None
    return {
        "plug": plug.name,
        "state": verdict(watts, state, hung_min_w=power.hung_min_w, off_max_w=power.off_max_w),
        "watts": watts,
        "at": entry.last_seen if entry is not None else None,
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


def _read(path: Path) -> PowerDocument | None:
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
    document = documents.read_or_none(path, PowerDocument)
    _cache[path] = (key, document)
    return document
