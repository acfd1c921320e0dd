"""Typed handshake messages with validation; ``from_json`` raises ValidationError."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from handshake.errors import ValidationError
from handshake.util import strictjson
from handshake.util.timeutil import iso, parse_iso

Reason = Literal["shutdown", "suspend", "reboot"]
REASONS: tuple[Reason, ...] = ("shutdown", "suspend", "reboot")
WAKE_SOURCES = ("api", "button", "schedule", "host", "inbox", "dashboard", "cli")
# Why the host was woken: one vocabulary from the code to usage.json, the dashboard and
# the metrics. ``wake_at``: the host asked for it when it went to sleep; ``demand:*``: a
# client wanted the host while the Pi answered for its name; ``plan``: the energy plan in
# force is about to expire and must be renewed.
WakeReason = Literal["button", "api", "schedule", "wake_at", "demand:dns", "demand:port",
                     "inbox", "plan"]
WAKE_REASONS: tuple[WakeReason, ...] = ("button", "api", "schedule", "wake_at", "demand:dns",
                                        "demand:port", "inbox", "plan")
# What a wake request's ``source`` counts as.
_REASON_OF_SOURCE: dict[str, WakeReason] = {
    "api": "api", "cli": "api", "host": "api", "button": "button", "dashboard": "button",
    "schedule": "schedule", "inbox": "inbox", "wake_at": "wake_at", "plan": "plan",
    "demand:dns": "demand:dns", "demand:port": "demand:port"}


def wake_reason(source: str) -> WakeReason:
    """The wake reason a request from ``source`` (one of WAKE_SOURCES) is recorded under."""
    return _REASON_OF_SOURCE.get(source, "api")
# A snapshot is informational metadata; bound it so a buggy host cannot fill the SD card.
MAX_SNAPSHOT_KEYS = 1000
# An uptime beyond a century is a broken peer, not a long-lived host.
MAX_UPTIME_S = 100 * 365 * 86400


def loads(raw: bytes | str) -> Any:
    """JSON from a peer; ValidationError for anything a browser's JSON.parse would refuse.

    Python's json accepts NaN and Infinity (and 1e999 becomes inf): stored in a public
    file they would break the dashboard. Nesting deeper than ``strictjson.MAX_DEPTH`` is
    refused before parsing. Private files are read by the same parser (``privatefile``).
    """
    try:
        return strictjson.loads(raw)
    except strictjson.JsonError as exc:
        raise ValidationError(f"malformed JSON: {exc}") from None


def _only(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ValidationError(f"unknown field(s): {', '.join(extra)}; allowed: "
                              f"{', '.join(sorted(allowed))}")


def _opt_time(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"expected an ISO 8601 string or null, got {value!r}", key)
    try:
        return parse_iso(value)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 across a zone
        raise ValidationError(f"expected an ISO 8601 timestamp with zone: {exc}", key) from None


@dataclass(frozen=True, slots=True)
class GoingOffline:
    """The host is about to sleep, shut down or reboot."""

    reason: Reason
    wake_at: datetime | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GoingOffline:
        _only(data, {"reason", "wake_at", "snapshot"})
        reason = data.get("reason")
        if reason not in REASONS:
            raise ValidationError(f"expected one of {', '.join(REASONS)}, got {reason!r}", "reason")
        snapshot = data.get("snapshot", {})
        if snapshot is None:
            snapshot = {}
        if not isinstance(snapshot, dict):
            raise ValidationError(f"expected an object, got {type(snapshot).__name__}", "snapshot")
        if len(snapshot) > MAX_SNAPSHOT_KEYS:
            raise ValidationError(f"expected at most {MAX_SNAPSHOT_KEYS} keys", "snapshot")
        return cls(reason=reason, wake_at=_opt_time(data, "wake_at"), snapshot=snapshot)

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "wake_at": iso(self.wake_at), "snapshot": self.snapshot}


@dataclass(frozen=True, slots=True)
class ComingOnline:
    """The host is up and its agent answers."""

    boot_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComingOnline:
        _only(data, {"boot_id"})
        boot_id = data.get("boot_id")
        if boot_id is not None and not isinstance(boot_id, str):
            raise ValidationError(f"expected a string or null, got {boot_id!r}", "boot_id")
        return cls(boot_id=boot_id)

    def to_json(self) -> dict[str, Any]:
        return {"boot_id": self.boot_id}


@dataclass(frozen=True, slots=True)
class WakeRequest:
    """Someone asks the Pi to wake the host."""

    source: str = "api"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WakeRequest:
        _only(data, {"source"})
        source = data.get("source", "api")
        if source not in WAKE_SOURCES:
            raise ValidationError(f"expected one of {', '.join(WAKE_SOURCES)}, got {source!r}",
                                  "source")
        return cls(source=source)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source}


@dataclass(frozen=True, slots=True)
class HostHealth:
    """The host agent's answer to ``GET /api/v1/health``."""

    ok: bool
    boot_id: str | None
    uptime_s: float | None

    @classmethod
    def from_json(cls, data: Any) -> HostHealth:
        if not isinstance(data, dict):
            raise ValidationError("expected a JSON object")
        ok, boot_id, uptime = data.get("ok"), data.get("boot_id"), data.get("uptime_s")
        if not isinstance(ok, bool):
            raise ValidationError(f"expected true or false, got {ok!r}", "ok")
        if boot_id is not None and not isinstance(boot_id, str):
            raise ValidationError(f"expected a string, got {boot_id!r}", "boot_id")
        if uptime is not None and (not isinstance(uptime, int | float) or isinstance(uptime, bool)
                                   or not 0 <= uptime < MAX_UPTIME_S):
            raise ValidationError(f"expected a number of seconds, got {uptime!r:.40}", "uptime_s")
        return cls(ok=ok, boot_id=boot_id, uptime_s=None if uptime is None else float(uptime))
