"""The notifier's private file: tracked alarms and undelivered messages, in one atomic write.

``private/notify.json`` holds both, so a restart resumes exactly where it stopped: a raised
alarm is not raised again, a message not yet delivered is sent after the restart. Delivery
is at least once (a crash between a receiver's 2xx and the rewrite sends it again): every
message carries a stable ``id`` (and the ``X-Edgepair-Event-Id`` header) to deduplicate on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handshake.util import atomic, privatefile
from pi.notify.detect import State, state_from_json, state_to_json

SCHEMA = "edgepair.notify-state/1"
FILE = "notify.json"


@dataclass(slots=True)
class Entry:
    """One message for one target, until it is delivered or too old."""

    target: str
    event: dict[str, Any]
    created: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "event": self.event, "created": self.created,
                "attempts": self.attempts, "next_at": self.next_at,
                "last_error": self.last_error}


def load(private_dir: Path) -> tuple[State, list[Entry]]:
    """What the last run left (a bad file is set aside: a fresh start, with one WARNING)."""
    found = privatefile.read(private_dir / FILE, _convert)
    return found if found is not None else (State(), [])


def document(state: State, outbox: list[Entry]) -> dict[str, Any]:
    """What ``write`` stores: a snapshot (take it in the loop, write it in a thread)."""
    return {"schema": SCHEMA, **state_to_json(state), "outbox": [e.to_json() for e in outbox]}


def write(private_dir: Path, document: dict[str, Any]) -> None:
    """Write the document atomically (blocking: call it in a thread)."""
    private_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(private_dir / FILE, document, mode=0o600)


def _convert(data: Any) -> tuple[State, list[Entry]]:
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise ValueError(f"expected a {SCHEMA} document")
    outbox = [Entry(target=str(e["target"]), event=dict(e["event"]), created=float(e["created"]),
                    attempts=int(e["attempts"]), next_at=float(e["next_at"]),
                    last_error=e.get("last_error"))
              for e in data.get("outbox") or []]
    return state_from_json(data), outbox
