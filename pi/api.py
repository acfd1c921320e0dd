"""The Pi's api daemon: handshake HTTP API, heartbeat, WoL, DNS failover, public files."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import itertools
import logging
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from handshake import __version__, documents
from handshake.auth import Verifier
from handshake.connlimits import limits_for
from handshake.documents import InboxDocument
from handshake.guard import Guard, GuardedSite
from handshake.http import add_frontend, json_body, json_error, make_app, signed, verify_request
from handshake.messages import ComingOnline, GoingOffline, WakeRequest
from handshake.replay import NonceStore
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from pi import pihole_stats, pistats, replan
from pi import state as sm
from pi.backup.service import BackupService
from pi.config import PiConfig
from pi.control import planapi
from pi.demand.service import DemandService
from pi.dns import QueryWatcher, make_backend
from pi.heartbeat import HeartbeatProbe
from pi.hostloop import HostController
from pi.metrics import CONTENT_TYPE, Scrape
from pi.openapi import OPENAPI, PI_OPENAPI
from pi.ratelimit import TokenBucket
from pi.usage.service import UsageService
from pi.wol import WolSender

if TYPE_CHECKING:
    from pi.notify.service import NotifyService

log = logging.getLogger(__name__)

CONTROLLER = web.AppKey("controller", HostController)
BUCKET = web.AppKey("wake_bucket", TokenBucket)
CONFIG = web.AppKey("config", PiConfig)
STARTED = web.AppKey("started", float)
METRICS = web.AppKey("metrics", Scrape)
# Public files are small and rewritten atomically; the dashboard polls them.
_PUBLIC_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}\.json$")
# pi.json refresh period: load and memory move slowly.
PI_STATS_INTERVAL_S = 60.0
PI_STATS_FIRST_REFRESH_S = 5.0
# Anonymous wake bursts: a user double-clicking the button is fine, a script is not.
ANONYMOUS_WAKE_BURST = 3
# Loops that feed the systemd watchdog (each kicks at least every heartbeat interval).
WATCHDOG_LOOPS = ("heartbeat",)


def build_app(config: PiConfig, controller: HostController, key: bytes,
              clock: Callable[[], float] = time.time,
              verifier: Verifier | None = None,
              metrics: Scrape | None = None) -> web.Application:
    """The aiohttp application (routes only; loops are started by ``run``)."""
    app = make_app(config.api.max_body_bytes, verifier or Verifier(key, clock=clock))
    app[CONTROLLER] = controller
    app[METRICS] = metrics or Scrape(config.public_dir, clock=clock)
    app[CONFIG] = config
    app[STARTED] = time.monotonic()
    app[BUCKET] = TokenBucket(rate_per_min=config.api.anonymous_wake_per_min,
                              burst=min(ANONYMOUS_WAKE_BURST, config.api.anonymous_wake_per_min))
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/api/v1/host/going-offline", going_offline)
    app.router.add_post("/api/v1/host/coming-online", coming_online)
    app.router.add_post("/api/v1/wake", wake)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/data/{name}", public_file)
    app.router.add_get("/metrics", prometheus_metrics)
    app[OPENAPI] = copy.deepcopy(PI_OPENAPI)
    planapi.add_routes(app, config)  # PUT /api/v1/plan and its OpenAPI paths
    frontend = config.api.frontend_dir
    if frontend is not None and (frontend / "index.html").is_file():
        add_frontend(app, frontend)
    else:
        app.router.add_get("/", no_frontend)
    return app


async def health(request: web.Request) -> web.Response:
    """Liveness of the api daemon itself."""
    return web.json_response({"ok": True, "version": __version__,
                              "uptime_s": round(time.monotonic() - request.app[STARTED], 3)})


async def status(request: web.Request) -> web.Response:
    """What host.json holds, fresh."""
    return web.Response(body=documents.encode(request.app[CONTROLLER].document(time.time())),
                        content_type="application/json")


@signed
async def going_offline(request: web.Request) -> web.Response:
    """The host is about to sleep: switch DNS to the Pi, store its snapshot, then ack.

    The transition comes first: nothing in the snapshot (informational) may hold it up.
    """
    message = GoingOffline.from_json(await json_body(request))
    controller = request.app[CONTROLLER]
    wake_at = message.wake_at.timestamp() if message.wake_at else None
    new = await controller.handle(sm.GoingOffline(message.reason, wake_at))
    sanitised = await controller.store_snapshot(message.reason, wake_at, message.snapshot)
    answer = {"ack": True, "state": new.state.value, "dns_target": new.dns_target,
              "wake_at": iso(new.wake_at)}
    return web.json_response({**answer, "sanitised": sanitised} if sanitised else answer)


@signed
async def coming_online(request: web.Request) -> web.Response:
    """The host is up: DNS back to the host, tell it what waits in the inbox."""
    ComingOnline.from_json(await json_body(request))
    new = await request.app[CONTROLLER].handle(sm.ComingOnline())
    return web.json_response({"ack": True, "state": new.state.value,
                              "dns_target": new.dns_target,
                              "inbox_pending": _inbox_pending(request.app[CONFIG])})


async def wake(request: web.Request) -> web.Response:
    """Send a magic packet: signed, or anonymous and rate-limited when allowed."""
    config = request.app[CONFIG]
    if "Authorization" in request.headers:
        await verify_request(request)
        message = WakeRequest.from_json(await json_body(request))
    elif not config.api.allow_anonymous_wake:
        return json_error(401, "unauthorized",
                          "wake needs a signed request (allow_anonymous_wake is off)")
    else:
        message = WakeRequest.from_json(await json_body(request))  # a bad body costs no token
        bucket = request.app[BUCKET]
        if not bucket.allow(time.monotonic()):
            retry = bucket.retry_after()
            response = json_error(429, "rate_limited",
                                  f"too many anonymous wake requests; retry in {retry:.0f} s")
            response.headers["Retry-After"] = str(max(1, round(retry)))
            return response
    controller = request.app[CONTROLLER]
    before = controller.status.state
    sent_before = controller.wol_sent
    new = await controller.handle(sm.WakeRequested(message.source))
    sent = controller.wol_sent > sent_before
    if before is sm.HostState.ONLINE:
        return web.json_response({"sent": False, "state": new.state.value,
                                  "message": "host is already online"})
    if before is sm.HostState.GOING_OFFLINE:
        return web.json_response({"sent": False, "state": new.state.value,
                                  "message": "host is going down; it will be woken once down"},
                                 status=202)
    return web.json_response({"sent": sent, "state": new.state.value,
                              "boot_timeout_s": config.host.boot_timeout_s}, status=202)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of this API."""
    return web.json_response(request.app[OPENAPI])


async def prometheus_metrics(request: web.Request) -> web.Response:
    """Prometheus text built from the public files (pi.metrics), off the event loop."""
    metrics = request.app[METRICS]
    body = metrics.reuse() or await asyncio.to_thread(metrics.render)
    response = web.Response(body=body, headers={"Cache-Control": "no-cache"})
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def public_file(request: web.Request) -> web.StreamResponse:
    """``/data/<name>.json``: the public files, never cached, never outside public/."""
    name = request.match_info["name"]
    if not _PUBLIC_NAME.match(name):
        response = json_error(404, "not_found", f"no public file {name!r}")
    else:
        try:
            data = (request.app[CONFIG].public_dir / name).read_bytes()
        except FileNotFoundError:
            response = json_error(404, "not_found", f"{name} has not been written yet")
        else:
            response = web.Response(body=data, content_type="application/json",
                                    headers={"Cache-Control": "no-cache"})
    # Public and read-only: the host's dashboard (another origin) reads them too, 404s included.
    response.headers["Access-Control-Allow-Origin"] = "*"
    # The host's dashboard reads these from another origin and corrects its clock by Date.
    response.headers["Access-Control-Expose-Headers"] = "Date"
    return response


async def no_frontend(request: web.Request) -> web.Response:
    """``GET /`` without a dashboard: a small page saying what this is and where to go."""
    return web.Response(text=NO_FRONTEND_HTML.format(version=html.escape(__version__)),
                        content_type="text/html")


NO_FRONTEND_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgepair api</title></head>
<body>
<h1>edgepair api {version}</h1>
<p>This is the api daemon of an edgepair Pi: it watches the host, wakes it and switches
DNS between the host and the Pi.</p>
<ul>
<li><a href="/api/v1/status">/api/v1/status</a> &mdash; the host's state (JSON)</li>
<li><a href="/api/v1/health">/api/v1/health</a> &mdash; is this daemon up</li>
<li><a href="/api/v1/openapi.json">/api/v1/openapi.json</a> &mdash; the API (OpenAPI)</li>
<li>/data/&lt;name&gt;.json &mdash; the public files, e.g.
<a href="/data/host.json">/data/host.json</a></li>
</ul>
<p>No dashboard is configured. To serve it here, set <code>frontend_dir</code> in the
<code>[api]</code> section of the Pi's config to a folder holding the dashboard's
<code>index.html</code> (the shipped <code>frontend-dist</code>), then restart the daemon.</p>
</body></html>
"""


def _inbox_pending(config: PiConfig) -> int:
    inbox = documents.read_or_none(config.public_dir / documents.FILES[InboxDocument],
                                   InboxDocument)
    return 0 if inbox is None else inbox.pending.files


async def run(config: PiConfig, *, ready: Callable[[], None] = lambda: None,
              kick: Callable[[str], None] = lambda name: None) -> None:
    """Run the api daemon until cancelled."""
    secrets = config.secrets()
    async with aiohttp.ClientSession() as session:
        dns = make_backend(config.dns, secrets, session=session)
        await dns.start()
        try:
            wol = WolSender(config.host.mac, config.wol)
            probe = HeartbeatProbe(config.host.url, config.host.heartbeat_timeout_s, session)
            usage = UsageService(config)
            controller = HostController(config, dns, wol.send, probe.probe, kick=kick,
                                        observers=[usage])
            usage.open(controller.status)
            demand = DemandService(config, controller)
            controller.observers.append(demand)
            if config.wake_on_demand.enabled:
                controller.describe_demand = demand.document
            if isinstance(dns, QueryWatcher):
                dns.on_query = demand.on_dns
            backup = None
            if config.backup is not None:
                backup = BackupService(config, config.backup, secrets.handshake_key,
                                       lambda: controller.status)
                controller.observers.append(backup)
            await controller.start()
            verifier = restore_verifier(config, secrets.handshake_key)
            notifier = _notifier(config)
            app = build_app(config, controller, secrets.handshake_key, verifier=verifier,
                            metrics=Scrape(config.public_dir, dns=dns, notify=None if notifier
                                           is None else notifier.figures))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            try:
                host, port = config.api.listen
                limits = limits_for(config.api.max_connections, config.api.max_client_connections)
                await GuardedSite(runner, host, port, Guard(limits, name="api")).start()
                log.info("api listening on %s:%d; DNS %s → %s (%s)", host, port,
                         config.dns.name, controller.desired_address(), config.dns.backend)
                async with controller.running(), asyncio.TaskGroup() as group:
                    ready()
                    for loop in (demand.run(), usage.run(),  # usage commits when cancelled
                                 *_optional_loops(config, session, controller, backup, notifier)):
                        group.create_task(loop)
            finally:
                await runner.cleanup()
                save_nonces(config, verifier)
        finally:
            await dns.close()


def _notifier(config: PiConfig) -> NotifyService | None:
    """The notifier, when [[notify]] targets exist (only then are watchdog and the senders
    imported). It runs isolated: never raises, never awaited by failover."""
    if not config.notify:
        return None
    from pi.notify.service import NotifyService  # noqa: PLC0415

    return NotifyService(config)


def _optional_loops(config: PiConfig, session: aiohttp.ClientSession, controller: HostController,
                    backup: BackupService | None,
                    notifier: NotifyService | None) -> list[Coroutine[Any, Any, None]]:
    """The api daemon's loops that only some configurations have, and pi.json's."""
    loops = [_publish_pi_stats(config, backup)]
    if config.pihole is not None:
        loops.append(pihole_stats.run(config, session))
    if backup is not None:
        loops.append(backup.run())
    if config.control is not None:
        loops.append(replan.run(config, controller))
    if notifier is not None:
        loops.append(notifier.run())
    return loops


def restore_verifier(config: PiConfig, key: bytes, now: float | None = None) -> Verifier:
    """The signature checker, with the replay cache a clean stop left behind (see replay)."""
    return NonceStore(config.private_dir).verifier(key, now=now)


def save_nonces(config: PiConfig, verifier: Verifier) -> None:
    """Keep the replay cache over a clean restart."""
    NonceStore(config.private_dir).save(verifier)


async def _publish_pi_stats(config: PiConfig, backup: BackupService | None = None) -> None:
    path = config.public_dir / "pi.json"
    started = time.time()
    # Once soon after start too: the other daemons write their first files by then.
    delays = itertools.chain([PI_STATS_FIRST_REFRESH_S], itertools.repeat(PI_STATS_INTERVAL_S))
    quiet = QuietLogger(log)
    while True:
        try:
            document = pistats.collect(config.pi.state_dir, config.daemons(), PI_STATS_INTERVAL_S,
                                       pihole=config.pihole is not None,
                                       grace_until=started + pistats.STARTUP_GRACE_S,
                                       shares=config.shares(),
                                       backup=None if backup is None else backup.status())
        except OSError as exc:  # out of descriptors: /proc cannot be read; next round
            quiet.failure("collect", "cannot collect the Pi's figures: %s", exc.strerror or exc)
        else:
            quiet.success("collect", "the Pi's figures are readable again")
            await asyncio.to_thread(documents.try_publish, path, document, quiet)
        wait = next(delays)
        if backup is None:
            await asyncio.sleep(wait)
        else:  # a finished backup is news: the Pi card shows it at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(backup.finished.wait(), wait)
            backup.finished.clear()


def frontend_default() -> Path:
    """The dashboard shipped beside the packages (a source checkout or /opt/edgepair)."""
    return Path(__file__).resolve().parent.parent / "frontend-dist"
