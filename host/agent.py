"""The host agent: a small HTTP server the Pi polls (health) and later feeds (inbox)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from handshake import __version__
from handshake.auth import Verifier
from handshake.connlimits import limits_for
from handshake.errors import FatalError
from handshake.guard import Guard, GuardedSite
from handshake.http import add_frontend, make_app
from handshake.replay import NonceStore
from host.backup import receiver as backup_receiver
from host.config import HostConfig
from host.idle import loop as idle_loop
from host.inbox import receiver
from host.routes import OPENAPI_PATHS_KEY, PREFIX, SIGNED, add_route
from host.routes import json_response as _json_response
from host.routes import ref as _ref
from host.snapshot import read_boot_id, read_uptime

log = logging.getLogger(__name__)

# Well inside any sane systemd WatchdogSec (≥ 15 s), cheap enough to run forever.
TICK_S = 5.0
# Lets in-flight requests (an inbox upload) finish on shutdown without stalling systemd.
SHUTDOWN_GRACE_S = 5.0

BOOT_ID_KEY = web.AppKey("boot_id", str)
PUBLIC_DIR_KEY = web.AppKey("public_dir", Path)
PI_URL_KEY = web.AppKey("pi_url", str)
_PUBLIC_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}\.json$")


def build_app(config: HostConfig, *, boot_id: str | None = None,
              clock: Callable[[], float] = time.time,
              verifier: Verifier | None = None) -> web.Application:
    """The agent's app: JSON errors, body limit, the signature verifier, documented routes."""
    verifier = verifier or Verifier(config.secrets().handshake_key, clock=clock)
    app = make_app(config.host.max_body_bytes, verifier)
    app[BOOT_ID_KEY] = boot_id or read_boot_id()
    app[OPENAPI_PATHS_KEY] = {}
    add_route(app, "GET", f"{PREFIX}/health", health, {
        "operationId": "getHealth",
        "summary": "Is the agent up; which boot is this (open).",
        "security": [],
        "responses": {"200": _json_response("The agent answers.", _ref("Health"))},
    })
    add_route(app, "GET", f"{PREFIX}/openapi.json", openapi, {
        "operationId": "getOpenApi",
        "summary": "This document (open).",
        "security": [],
        "responses": {"200": _json_response("OpenAPI 3.1 document.", {"type": "object"})},
    })
    receiver.add_routes(app, config)
    backup_receiver.add_routes(app, config.backup, config.host.state_dir)
    app[PUBLIC_DIR_KEY] = config.public_dir
    add_route(app, "GET", "/data/{name}", public_file, {
        "operationId": "getPublicFile",
        "summary": "A public JSON file of the host (open).",
        "security": [],
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*\\.json$"}}],
        "responses": {"200": _json_response("The file.", {"type": "object"})},
    })
    app[PI_URL_KEY] = config.pi.url
    add_route(app, "GET", f"{PREFIX}/dashboard", dashboard, {
        "operationId": "getDashboardMode",
        "summary": "Tells the dashboard it runs on the host and where the Pi's files are (open).",
        "security": [],
        "responses": {"200": _json_response("Mode and the Pi's URL.", {
            "type": "object", "required": ["mode", "pi_url"],
            "properties": {"mode": {"const": "host"}, "pi_url": {"type": "string"}}})},
    })
    frontend = config.host.frontend_dir
    if frontend is not None and (frontend / "index.html").is_file():
        add_frontend(app, frontend)
        app[OPENAPI_PATHS_KEY]["/"] = {"get": {
            "operationId": "getDashboard", "summary": "The full dashboard (open).",
            "security": [], "responses": {"200": {"description": "HTML"},
                                          "default": _json_response("Error.", _ref("Error"))}}}
    return app


async def public_file(request: web.Request) -> web.StreamResponse:
    """``/data/<name>.json``: the host's public files (what only the host knows)."""
    name = request.match_info["name"]
    if not _PUBLIC_NAME.match(name):
        raise web.HTTPNotFound(text=f"no public file {name!r}")
    try:
        data = (request.app[PUBLIC_DIR_KEY] / name).read_bytes()
    except FileNotFoundError:
        raise web.HTTPNotFound(text=f"{name} has not been written yet") from None
    return web.Response(body=data, content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


async def dashboard(request: web.Request) -> web.Response:
    """Open: the dashboard's mode, and the Pi's URL its cards read the Pi's files from."""
    return web.json_response({"mode": "host", "pi_url": request.app[PI_URL_KEY]})


async def run(config: HostConfig, *, on_ready: Callable[[], object] | None = None,
              on_tick: Callable[[], object] | None = None, tick_s: float | None = None,
              stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT, or, when the caller passes ``stop``, until it is set.

    A caller that passes ``stop`` owns the process's signals (the demo runs the agent
    inside its own process): ``run`` then installs no handlers. ``on_ready`` runs once
    the socket listens (sd_notify READY=1); ``on_tick`` every ``tick_s`` (default
    TICK_S) from the serving loop, so it stops if the loop hangs (watchdog).
    """
    nonces = NonceStore(config.private_dir)  # a replay refused across restarts too
    verifier = nonces.verifier(config.secrets().handshake_key)
    app = build_app(config, verifier=verifier)
    signals = (signal.SIGTERM, signal.SIGINT) if stop is None else ()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # Quiet journal: the Pi polls /health every few seconds, so no access log.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    idle_task: asyncio.Task[None] | None = None  # a strong reference while it runs
    try:
        host, port = config.host.listen
        try:
            limits = limits_for(config.host.max_connections, config.host.max_client_connections)
            await GuardedSite(runner, host, port, Guard(limits, name="host agent")).start()
        except OSError as exc:
            raise FatalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        for sig in signals:
            loop.add_signal_handler(sig, _stop_on, sig, stop)
        log.info("host agent listening on http://%s:%d", host, port)
        if config.idle.enabled:
            idle_task = asyncio.create_task(idle_loop.run(config, stop), name="idle")
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            if on_tick is not None:
                on_tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick_s or TICK_S):
                    await stop.wait()
    finally:
        if idle_task is not None:
            idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await idle_task
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        nonces.save(verifier)
    log.info("host agent stopped")


async def health(request: web.Request) -> web.Response:
    """Open: liveness and the boot id, so the Pi can tell a reboot from a blip."""
    return web.json_response({
        "ok": True,
        "boot_id": request.app[BOOT_ID_KEY],
        "uptime_s": read_uptime(),
        "hostname": socket.gethostname(),
        "version": __version__,
    })


async def openapi(request: web.Request) -> web.Response:
    """Open: the OpenAPI document, built from the routes actually registered."""
    return web.json_response(openapi_document(request.app[OPENAPI_PATHS_KEY]))


def openapi_document(paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the given operations."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgepair host agent",
            "version": __version__,
            "description": "Runs on the host; the Pi polls its health and forwards its inbox.",
        },
        "security": SIGNED,
        "paths": {path: dict(ops) for path, ops in sorted(paths.items())},
        "components": {
            "securitySchemes": {"EdgePair": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "HMAC-SHA256 with the shared handshake key: "
                               "'EdgePair ts=<unix>, nonce=<hex>, sig=<hex>' over "
                               "METHOD\\nPATH?QUERY\\nts\\nnonce\\nsha256hex(body).",
            }},
            "schemas": {"Health": _HEALTH_SCHEMA, "Error": _ERROR_SCHEMA},
        },
    }


def _stop_on(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("%s received; stopping", sig.name)
    stop.set()


_HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "boot_id", "uptime_s"],
    "properties": {
        "ok": {"type": "boolean"},
        "boot_id": {"type": "string", "description": "Changes on every boot."},
        "uptime_s": {"type": ["number", "null"]},
        "hostname": {"type": "string"},
        "version": {"type": "string"},
    },
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }},
}
