"""nodes.json read as raw JSON, tolerantly, until the node daemon's typed document lands.

Shape (issue 12): ``{"schema": "edgepair.nodes/1", "generated_at", "nodes": [{"hwid", "name",
"role", "state": pending|online|offline, "last_seen", "firmware", "capabilities",
"readings": {NAME: {"value", "unit", "at"}}, "next_job"}]}``. Readers skip what does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from handshake import documents
from handshake.util import strictjson
from handshake.util.timeutil import parse_iso

FILE = "nodes.json"
SCHEMA = "edgepair.nodes/1"
# Without interval_s or stale_after_s in the file: stale past this (the node daemon
# rewrites it at least every poll; a node list is not a live reading).
DEFAULT_STALE_S = 300.0


@dataclass(frozen=True, slots=True)
class NodesFile:
    generated: float
    stale_after_s: float
    raw: dict[str, Any]

    def stale(self, now: float) -> bool:
        return documents.is_stale(self.generated, self.stale_after_s, now)


def read(path: Path) -> NodesFile | None:
    """The file's content; None when it is missing or not a nodes document."""
    try:
        data = path.read_bytes()
        strictjson.depth_ok(data.decode("utf-8", "replace"))
        raw = msgspec.json.decode(data)
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            return None
        generated = parse_iso(str(raw["generated_at"])).timestamp()
    except (OSError, ValueError, KeyError, OverflowError, msgspec.DecodeError):
        return None
    limit, interval = raw.get("stale_after_s"), raw.get("interval_s")
    if not isinstance(limit, int | float):
        limit = DEFAULT_STALE_S if not isinstance(interval, int | float) \
            else documents.stale_after(interval)
    return NodesFile(generated, float(limit or DEFAULT_STALE_S), raw)
