"""Manual control from the host: the agent signs and forwards an override to the Pi, and
runs the planner now ("replan now"), for the host CLI and the host UI's buttons.

Both routes answer loopback clients only (the host's own CLI, a browser on the host):
they move a battery, and the agent's other open routes are read-only. The Pi checks the
override against its own hard limits; its refusal (400 naming the limit) is passed on.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from aiohttp import web

from handshake.client import HandshakeClient
from handshake.errors import EdgepairError, PeerUnavailable, RequestError
from handshake.http import json_body, json_error
from handshake.override import MODES, SOURCES
from handshake.util.timeutil import utcnow
from host.config import HostConfig
from host.routes import PREFIX, add_route
from host.routes import json_response as _json_response
from host.routes import ref as _ref

log = logging.getLogger(__name__)

OVERRIDE_PATH = f"{PREFIX}/control/override"
REPLAN_PATH = f"{PREFIX}/control/replan"
CONFIG = web.AppKey("control_host_config", HostConfig)
# A forwarded override gets this long to reach the Pi (it is a person waiting).
FORWARD_TIMEOUT_S = 10.0

OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["mode"],
    "properties": {"mode": {"enum": list(MODES)},
                   "until": {"type": "string", "format": "date-time"},
                   "target_soc": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
                   "power_w": {"type": ["number", "null"], "minimum": 0}}}


def add_routes(app: web.Application, config: HostConfig) -> None:
    app[CONFIG] = config
    add_route(app, "POST", OVERRIDE_PATH, post_override, {
        "operationId": "postControlOverride",
        "summary": "Sign and forward a manual override to the Pi (loopback clients only).",
        "security": [],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": OVERRIDE_SCHEMA}}},
        "responses": {"200": _json_response("The Pi stored it.", {"type": "object"}),
                      "400": _json_response("Refused by the Pi (the field or limit named).",
                                            _ref("Error")),
                      "403": _json_response("Not a loopback client, or a cross-site page.",
                                            _ref("Error")),
                      "409": _json_response("The Pi has no energy control.", _ref("Error")),
                      "415": _json_response("Not JSON.", _ref("Error")),
                      "502": _json_response("The Pi answered with an error.", _ref("Error")),
                      "503": _json_response("The Pi cannot be reached.", _ref("Error"))}})
    add_route(app, "POST", REPLAN_PATH, post_replan, {
        "operationId": "postControlReplan",
        "summary": "Run the planner now and push its plan to the Pi (loopback clients only).",
        "security": [],
        "responses": {"200": _json_response("Planned and pushed.", {"type": "object"}),
                      "403": _json_response("Not a loopback client.", _ref("Error")),
                      "409": _json_response("No [planner] section.", _ref("Error")),
                      "502": _json_response("An input or the Pi failed.", _ref("Error")),
                      "503": _json_response("The Pi or an input cannot be reached.",
                                            _ref("Error"))}})


def _loopback(request: web.Request) -> web.Response | None:
    """None for the host's own clients; else the 403 to answer.

    Loopback alone is not enough: a web page from anywhere, open in a browser on the host,
    could POST here (a "simple" cross-site request needs no CORS preflight). Browsers name
    the page that sends a request (``Origin``, ``Sec-Fetch-Site``): only the agent's own
    pages, and clients that are no browser (the CLI sends neither), get through.
    """
    try:
        loopback = request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return json_error(403, "forbidden", "manual control answers loopback clients only "
                          "(run `edgepair host control …` on the host)")
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site") or (
            origin is not None and origin != f"{request.scheme}://{request.host}"):
        return json_error(403, "cross_origin", f"manual control refuses requests a page from "
                          f"{origin or 'another site'} sends: only this agent's own page or "
                          f"the host's CLI may move the battery")
    return None


async def post_override(request: web.Request) -> web.Response:
    """Forward the body to the Pi, signed, with ``source: host``; pass its answer on."""
    refused = _loopback(request)
    if refused is not None:
        return refused
    if request.content_type != "application/json":
        return json_error(415, "unsupported_media_type",
                          f"expected Content-Type: application/json, got {request.content_type}")
    body = await json_body(request)
    body.pop("source", None)
    config = request.app[CONFIG]
    try:
        async with HandshakeClient(config.pi.url, config.secrets().handshake_key,
                                   timeout_s=FORWARD_TIMEOUT_S) as client:
            answer = await client.request("POST", OVERRIDE_PATH, {**body, "source": SOURCES[2]})
    except RequestError as exc:
        status = exc.status if exc.status in (400, 409) else 502
        return json_error(status, exc.code, str(exc))
    except PeerUnavailable as exc:
        return json_error(503, "pi_unavailable", f"the Pi cannot be reached: {exc}", retry=True)
    return web.json_response(answer)


async def post_replan(request: web.Request) -> web.Response:
    """Run the planner now (inputs, the Pi's SoC, the DP) and push the plan."""
    refused = _loopback(request)
    if refused is not None:
        return refused
    config = request.app[CONFIG]
    if config.planner is None:
        return json_error(409, "not_configured", "no [planner] section in the host's config")
    # Lazily: the planner's numpy stays out of the agent until a replan is asked for.
    from host.planner import cli as plan_cli  # noqa: PLC0415

    try:
        document, answer = await plan_cli.plan_and_push(config, config.planner, utcnow())
    except PeerUnavailable as exc:
        return json_error(503, "unavailable", str(exc), retry=True)
    except (EdgepairError, ValueError) as exc:
        return json_error(502, "replan_failed", str(exc))
    optimizer = document.get("optimizer", {})
    return web.json_response({"id": document["id"], "seq": document["seq"],
                              "valid_until": document["valid_until"],
                              "status": optimizer.get("status"),
                              "savings_eur": optimizer.get("savings_eur"), "pi": answer})
