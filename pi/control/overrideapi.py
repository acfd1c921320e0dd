"""``POST /api/v1/control/override`` on the api daemon: a signed manual override, checked
against the Pi's hard limits and its inverter profile, stored atomically as
``private/override.json`` for the control daemon (which watches it, as it watches the plan).

Imported by the api daemon: no Modbus here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from typing import Any

from aiohttp import web

from handshake import override as overrides
from handshake.errors import ValidationError
from handshake.http import json_body, json_error, signed
from handshake.util import atomic
from handshake.util.timeutil import utcnow
from pi.config import PiConfig
from pi.control.config import ControlConfig
from pi.control.plan import OVERRIDE_FILE
from pi.openapi import OPENAPI

log = logging.getLogger(__name__)

PATH = "/api/v1/control/override"
CONFIG = web.AppKey("override_config", PiConfig)
LOCK = web.AppKey("override_lock", asyncio.Lock)


def add_routes(app: web.Application, config: PiConfig) -> None:
    """Register ``POST /api/v1/control/override`` and its OpenAPI entry."""
    app[CONFIG] = config
    app[LOCK] = asyncio.Lock()
    app.router.add_post(PATH, post_override)
    app[OPENAPI]["paths"][PATH] = OPENAPI_PATH
    app[OPENAPI]["components"]["schemas"]["Override"] = OVERRIDE_SCHEMA


def accept(body: Any, control: ControlConfig, source: str = "api") -> overrides.Override | None:
    """The override checked against this Pi (limits and profile); None for ``auto``."""
    override = overrides.check(body, control.limits, utcnow(), source)
    if override is not None and override.mode != overrides.SAFE \
            and override.mode not in control.profile.modes:
        raise ValidationError(f"the inverter profile {control.profile.name} has no "
                              f"{override.mode} mode (it has {', '.join(control.profile.modes)})",
                              "mode")
    return override


@signed
async def post_override(request: web.Request) -> web.Response:
    """Store (or, with ``auto``, end) the override; 400 naming the field or the hard limit."""
    config = request.app[CONFIG]
    control: ControlConfig | None = config.control
    if control is None:
        return json_error(409, "not_configured",
                          "energy control is not configured on this Pi (no [control] section)")
    body = await json_body(request)
    source = body.pop("source", "api")
    if source not in overrides.SOURCES:
        raise ValidationError(f"expected one of {', '.join(overrides.SOURCES)}", "source")
    override = accept(body, control, source)
    path = config.private_dir / OVERRIDE_FILE
    try:
        async with request.app[LOCK]:
            if override is None:
                await asyncio.to_thread(_remove, path)
            else:
                await asyncio.to_thread(atomic.write_json, path, override.to_json(), 0o640)
    except OSError as exc:
        log.warning("cannot store the override: %s", exc.strerror or exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return json_error(507, "insufficient_storage",
                              f"the Pi cannot store the override: {exc.strerror or exc}")
        return json_error(503, "storage_unavailable",
                          f"the Pi cannot store the override now: {exc.strerror or exc}", retry=True)
    if override is None:
        log.info("override ended (auto): back to the plan")
        return web.json_response({"accepted": True, "override": None})
    log.info("%s", override.describe())
    doc = {k: v for k, v in override.to_json().items() if k != "schema"}
    return web.json_response({"accepted": True, "override": doc, "detail": override.describe()})


def _remove(path: os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["mode"],
    "description": "until is required for every mode but auto (at most 24 h ahead)",
    "properties": {
        "mode": {"enum": list(overrides.MODES)},
        "until": {"type": "string", "format": "date-time"},
        "target_soc": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "power_w": {"type": ["number", "null"], "minimum": 0},
        "source": {"enum": list(overrides.SOURCES)}}}

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
OPENAPI_PATH: dict[str, Any] = {"post": {
    "summary": "Override the plan by hand until a time (checked against the Pi's hard "
               "limits; auto ends it)",
    "security": [{"EdgePair": []}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Override"}}}},
    "responses": {
        "200": {"description": "stored (the control daemon carries it out within a tick)",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["accepted", "override"]}}}},
        "400": _ERROR, "401": _ERROR, "409": _ERROR, "413": _ERROR,
        "503": {**_ERROR, "description": "the override cannot be stored now"},
        "507": {**_ERROR, "description": "the Pi's card is full or read-only: not stored"}}}}
