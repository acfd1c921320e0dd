"""What nodes and the node daemon say to each other: pairing proofs, wrapped keys, the
messages, and actions checked against what a node declared it can do.

Nodes sign with the handshake's scheme (handshake/auth.py) using their own key; the
firmware implements the same in firmware/transport.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import msgspec

from handshake.errors import ValidationError
from pi.nodes.config import CAPABILITIES

PREFIX = "/api/v1/nodes"
HWID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{2,47}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
READING_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
KEY_BYTES = 32
# What a node may claim: a few capabilities, a few readings, short strings.
MAX_READINGS = 16
MOTOR_DIRECTIONS = ("up", "down")
# The firmware's own ceiling (firmware/capabilities.py MOTOR_HARD_MAX_S).
MOTOR_HARD_MAX_S = 120.0


def proof(code: str, hwid: str) -> str:
    """What a node's hello carries instead of its pairing code."""
    return hmac.new(code.encode(), f"hello:{hwid}".encode(), hashlib.sha256).hexdigest()


def wrap(key: bytes, code: str, hwid: str) -> str:
    """The node key XOR HMAC(code, "key:" + hwid): only a holder of the code unwraps it."""
    pad = hmac.new(code.encode(), f"key:{hwid}".encode(), hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(key, pad, strict=True)).hex()


class Hello(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    hwid: str
    firmware: str
    capabilities: list[str]
    proof: str
    limits: dict[str, dict[str, Any]] = {}


class Result(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    result: Any = None


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    value: float | int | bool
    unit: str | None = None


class Report(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    readings: dict[str, Reading] = {}
    results: list[Result] = []


class Poll(msgspec.Struct, frozen=True, kw_only=True):
    running: list[str] = []


def parse(data: dict[str, Any], kind: type[msgspec.Struct]) -> Any:
    """A message from its JSON object; ValidationError (400) says what is wrong."""
    try:
        message = msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc)) from None
    if isinstance(message, Hello):
        check_hello(message)
    if isinstance(message, Report):
        if len(message.readings) > MAX_READINGS:
            raise ValidationError(f"expected at most {MAX_READINGS} readings", "readings")
        bad = next((k for k in message.readings if not READING_RE.match(k)), None)
        if bad is not None:
            raise ValidationError(f"expected a reading name of 1-32 letters, digits, '_', '.' "
                                  f"or '-', got {bad[:40]!r}", "readings")
        for result in message.results:
            if result.status not in ("done", "failed"):
                raise ValidationError(f"expected done or failed, got {result.status!r}",
                                      "results.status")
    return message


def check_hello(hello: Hello) -> None:
    if not HWID_RE.match(hello.hwid):
        raise ValidationError("expected 3-48 letters, digits, '_', '.', ':' or '-'", "hwid")
    if not _HEX64.match(hello.proof):
        raise ValidationError("expected 64 hex digits (HMAC of the pairing code)", "proof")
    unknown = sorted(set(hello.capabilities) - set(CAPABILITIES))
    if unknown:
        raise ValidationError(f"unknown capabilities {', '.join(unknown)}; known: "
                              f"{', '.join(CAPABILITIES)}", "capabilities")
    if len(hello.firmware) > 64:
        raise ValidationError("expected at most 64 characters", "firmware")


def motor_max_s(limits: dict[str, dict[str, Any]]) -> float:
    value = (limits.get("motor") or {}).get("max_s", MOTOR_HARD_MAX_S)
    return min(float(value), MOTOR_HARD_MAX_S) if isinstance(value, int | float) else MOTOR_HARD_MAX_S


def check_action(node: str, capabilities: list[str], limits: dict[str, dict[str, Any]],
                 capability: str, params: dict[str, Any]) -> None:
    """ValidationError unless ``node`` can do ``capability`` with ``params``."""
    if capability not in capabilities:
        raise ValidationError(f"node {node!r} has no {capability} (it declared: "
                              f"{', '.join(capabilities) or 'nothing'})", "capability")
    allowed = {"motor": {"direction", "duration_s"}, "relay": {"on"}}.get(capability, set())
    extra = sorted(set(params) - allowed)
    if extra:
        raise ValidationError(f"{capability} takes {', '.join(sorted(allowed)) or 'no params'}, "
                              f"got {', '.join(extra)}", "params")
    if capability == "motor":
        direction, duration = params.get("direction"), params.get("duration_s")
        if direction not in MOTOR_DIRECTIONS:
            raise ValidationError(f"expected direction up or down, got {direction!r}",
                                  "params.direction")
        top = motor_max_s(limits)
        if isinstance(duration, bool) or not isinstance(duration, int | float) \
                or not 0 < duration <= top:
            raise ValidationError(f"expected 0 < duration_s ≤ {top:g} (node {node!r}'s "
                                  f"motor maximum), got {duration!r}", "params.duration_s")
    if capability == "relay" and not isinstance(params.get("on"), bool):
        raise ValidationError(f"expected on = true or false, got {params.get('on')!r}", "params.on")
