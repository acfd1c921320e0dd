"""``PUT /api/v1/plan`` on the api daemon: a signed plan, validated, stored atomically for the control daemon.

Imported by the api daemon: no Modbus here.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from handshake.http import json_body, json_error, signed
from handshake.util import atomic, privatefile
from handshake.util.timeutil import utcnow
from pi.config import PiConfig
from pi.control import plan as plans
from pi.control.config import ControlConfig
from pi.openapi import OPENAPI

log = logging.getLogger(__name__)

PATH = "/api/v1/plan"
CONFIG = web.AppKey("control_config", PiConfig)
LOCK = web.AppKey("plan_lock", asyncio.Lock)


def plan_path(config: PiConfig) -> Path:
    """Where the accepted plan lives (one writer: the api daemon; one reader: control)."""
    return config.private_dir / plans.PLAN_FILE


def add_routes(app: web.Application, config: PiConfig) -> None:
    """Register ``PUT /api/v1/plan`` and its OpenAPI entry."""
    app[CONFIG] = config
    app[LOCK] = asyncio.Lock()
    app.router.add_put(PATH, put_plan)
    app[OPENAPI]["paths"][PATH] = OPENAPI_PATH
    app[OPENAPI]["components"]["schemas"]["Plan"] = PLAN_SCHEMA


@signed
async def put_plan(request: web.Request) -> web.Response:
    """Validate and store the host's plan; 409 for a stale seq, 400 naming the bad field."""
    config = request.app[CONFIG]
    control: ControlConfig | None = config.control
    if control is None:
        return json_error(409, "not_configured",
                          "energy control is not configured on this Pi (no [control] section)")
    document = await json_body(request)
    plan = plans.validate(document, control.limits, control.load_names, now=utcnow(),
                          profile=control.profile)
    path = plan_path(config)
    async with request.app[LOCK]:
        current = await asyncio.to_thread(_stored, path)
        if current is not None:
            seq, stored_doc = current
            if plan.seq < seq or (plan.seq == seq and stored_doc != document):
                return json_error(409, "stale_seq", f"seq {plan.seq} is not newer than the stored "
                                  f"plan's seq {seq}", current_seq=seq)
            if stored_doc == document:
                return web.json_response({"accepted": True, "id": plan.id, "seq": plan.seq,
                                          "unchanged": True})
        data = json.dumps(document, separators=(",", ":")).encode() + b"\n"
        try:
            await asyncio.to_thread(atomic.write_bytes, path, data, 0o640)
        except OSError as exc:  # the stored plan is untouched (atomic): the Pi goes on with it
            log.warning("cannot store plan %s: %s", plan.id, exc.strerror or exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                return json_error(507, "insufficient_storage",
                                  f"the Pi cannot store the plan: {exc.strerror or exc}")
            return json_error(503, "storage_unavailable",
                              f"the Pi cannot store the plan now: {exc.strerror or exc}",
                              retry=True)
    log.info("plan %s (seq %d) accepted: %d slots until %s", plan.id, plan.seq, len(plan.slots),
             document["valid_until"])
    return web.json_response({"accepted": True, "id": plan.id, "seq": plan.seq,
                              "slots": len(plan.slots), "valid_until": document["valid_until"]})


def _stored(path: Path) -> tuple[int, Any] | None:
    """The stored plan's seq and document; None when there is none (a bad one is set
    aside with a warning, and the plan being uploaded replaces it)."""
    return privatefile.read(path, _seq_and_plan, log=log)


def _seq_and_plan(doc: Any) -> tuple[int, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("seq"), int):
        raise ValueError("expected a plan object with an integer seq")
    return doc["seq"], doc


PLAN_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["schema", "id", "seq", "generated_at", "valid_from", "valid_until", "slot_s",
                 "optimizer", "slots"],
    "properties": {
        "schema": {"const": plans.SCHEMA},
        "id": {"type": "string", "minLength": 1, "maxLength": plans.MAX_ID_LEN},
        "seq": {"type": "integer", "minimum": 0, "description": "monotonic: a lower or equal "
                "seq with other content is refused (409)"},
        "generated_at": {"type": "string", "format": "date-time"},
        "valid_from": {"type": "string", "format": "date-time",
                       "description": "a slot boundary (multiple of slot_s since the epoch)"},
        "valid_until": {"type": "string", "format": "date-time",
                        "description": "at most 48 h after valid_from"},
        "slot_s": {"const": plans.SLOT_S},
        "limits": {"type": "object", "additionalProperties": False,
                   "description": "may only tighten the Pi's [control] limits",
                   "properties": {k: {"type": "number"} for k in plans.LIMIT_KEYS}},
        "optimizer": {"type": "object", "required": ["status"], "properties": {
            "status": {"enum": list(plans.OPTIMIZER_STATUSES)}}},
        "slots": {"type": "array", "maxItems": plans.MAX_HORIZON_S // plans.SLOT_S, "items": {
            "type": "object", "additionalProperties": False, "required": ["start", "battery_mode"],
            "properties": {
                "start": {"type": "string", "format": "date-time"},
                "battery_mode": {"enum": list(plans.BATTERY_MODES)},
                "power_w": {"type": ["number", "null"], "minimum": 0},
                "soc_target": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
                "export_cap_w": {"type": ["number", "null"], "minimum": 0,
                                 "description": "feed-in cap (W; 0: none); not in normal slots"},
                "loads": {"type": "object", "additionalProperties": {"type": "boolean"}}}}},
    },
}

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
OPENAPI_PATH: dict[str, Any] = {"put": {
    "summary": "Store the host's energy plan for the control daemon (validated against the "
               "Pi's hard limits)",
    "security": [{"EdgePair": []}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Plan"}}}},
    "responses": {
        "200": {"description": "accepted (or the same plan again: unchanged)", "content": {
            "application/json": {"schema": {"type": "object", "required": ["accepted", "seq"]}}}},
        "400": _ERROR, "401": _ERROR, "409": _ERROR, "413": _ERROR,
        "503": {**_ERROR, "description": "the plan cannot be stored now (out of descriptors)"},
        "507": {**_ERROR, "description": "the Pi's card is full or read-only: not stored"}}}}
