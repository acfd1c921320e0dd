"""Pure decisions and documents of the inbox: inbox.json, whether to wake the host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handshake.documents import InboxDelivered, InboxDocument, InboxPending, schema_of
from handshake.util.timeutil import iso
from pi.inbox.config import InboxConfig
from pi.inbox.tracker import Identity, Tracker
from pi.inbox.upload import Progress

INBOX_SCHEMA = schema_of(InboxDocument)
# Host states in which the host sleeps (or is down) and a wake may help.
ASLEEP = ("offline", "unreachable")
# One magic packet per this long at most: the api daemon already watches the boot
# (boot_timeout_s); a host that did not come up is not helped by a packet every tick.
WAKE_REPEAT_S = 900.0


@dataclass(frozen=True, slots=True)
class Pending:
    """What waits on the Pi (including files in flight) and what of it is ready."""

    files: int = 0
    bytes: int = 0
    oldest_mtime: float | None = None
    ready_files: int = 0
    ready_bytes: int = 0
    oldest_ready_mtime: float | None = None
    hashed_files: int = 0


@dataclass(slots=True)
class Flush:
    """A run of sends while the host is online, from the first file to an empty queue."""

    started_at: float
    started_mono: float
    files: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Report:
    """What inbox.json says besides the pending counts."""

    in_flight: list[Progress] = field(default_factory=list)
    last_flush: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_state: str | None = None
    wake_requested_at: float | None = None
    # Delivered since the daemon started (counters: /metrics reads them with increase()).
    started_at: float | None = None
    delivered_files: int = 0
    delivered_bytes: int = 0


def pending(tracker: Tracker, now: float, known: Callable[[str, Identity], bool],
            min_hash_bytes: int) -> tuple[Pending, str | None]:
    """Count what waits; and the longest-waiting ready file worth hashing ahead, if any."""
    files = size = ready_files = ready_bytes = hashed = 0
    oldest: float | None = None
    oldest_ready: float | None = None
    candidate: tuple[float, str] | None = None
    for rel, entry in tracker.files.items():
        mtime = entry.identity.mtime_ns / 1e9
        files += 1
        size += entry.identity.size
        oldest = mtime if oldest is None else min(oldest, mtime)
        if entry.writing or not tracker.is_ready(entry, now):
            continue  # a file not seen closed counts once a lease has cleared it
        ready_files += 1
        ready_bytes += entry.identity.size
        oldest_ready = mtime if oldest_ready is None else min(oldest_ready, mtime)
        if known(rel, entry.identity):
            hashed += 1
        elif entry.identity.size > min_hash_bytes and (candidate is None
                                                       or entry.changed_at < candidate[0]):
            candidate = (entry.changed_at, rel)
    counts = Pending(files, size, oldest, ready_files, ready_bytes, oldest_ready, hashed)
    return counts, None if candidate is None else candidate[1]


def wake_due(config: InboxConfig, host_state: str | None, pending: Pending, now: float,
             last_requested_at: float | None) -> bool:
    """Wake a sleeping host when ready files are too many bytes or too old (wall clock)."""
    if not config.wake_enabled or host_state not in ASLEEP or pending.ready_files == 0:
        return False
    if last_requested_at is not None and now - last_requested_at < WAKE_REPEAT_S:
        return False
    if config.wake_min_bytes is not None and pending.ready_bytes >= config.wake_min_bytes:
        return True
    oldest = pending.oldest_ready_mtime
    return (config.wake_max_age_s is not None and oldest is not None
            and now - oldest >= config.wake_max_age_s)


def flush_json(flush: Flush, now: float, now_mono: float) -> dict[str, Any]:
    return {"at": iso(now), "files": flush.files, "bytes": flush.bytes,
            "duration_s": round(now_mono - flush.started_mono, 3)}


def document(config: InboxConfig, pending: Pending, report: Report, now: float) -> InboxDocument:
    """inbox.json (every text valid UTF-8: see ``shown``)."""
    return InboxDocument(
        generated_at=iso(now) or "",
        interval_s=config.publish_interval_s,
        pending=InboxPending(files=pending.files, bytes=pending.bytes,
                             oldest=iso(pending.oldest_mtime),
                             ready_files=pending.ready_files, ready_bytes=pending.ready_bytes,
                             hashed_files=pending.hashed_files),
        delivered=InboxDelivered(files=report.delivered_files, bytes=report.delivered_bytes,
                                 since=iso(report.started_at)),
        in_flight=_shown([p.to_json() for p in report.in_flight]),
        last_flush=_shown(report.last_flush),
        last_error=_shown(report.last_error),
        rejected=_shown([{"path": path, **info} for path, info in sorted(report.rejected.items())]),
        host_state=report.host_state,
        wake={"enabled": config.wake_enabled,
              "last_requested_at": iso(report.wake_requested_at)},
    )


def shown(text: str) -> str:
    """``text`` as valid UTF-8: a name's bytes that are not UTF-8 (decoded by Python as
    lone surrogates) become backslash escapes, ``caf\\xe9.txt``; valid text is kept."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name can hold
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _shown(value: Any) -> Any:
    """Every string in a JSON document (keys too) through ``shown``."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown(k) if isinstance(k, str) else k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value
