"""``edgepair pi run node``: the node daemon's HTTP server and its scheduling loop.

Endpoints under /api/v1/nodes: ``hello`` (open, rate-limited per client address), then
``{hwid}/poll`` and ``{hwid}/report`` signed with the node's own key (handshake/auth.py's
scheme). ``admin/…`` serves the ``edgepair node`` CLI: signed with the Pi's handshake key
and answered only to loopback clients, so the daemon stays the registry's one writer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from aiohttp import web

from handshake import __version__, documents
from handshake.auth import NonceCache, Verifier
from handshake.connlimits import limits_for
from handshake.documents import NodesDocument
from handshake.errors import ValidationError
from handshake.guard import Guard, GuardedSite
from handshake.http import json_body, json_error, make_app, read_body
from handshake.replay import NonceStore
from handshake.util import weekly
from handshake.util.quietlog import QuietLogger
from pi.config import PiConfig
from pi.nodes import wire
from pi.nodes.config import NodesConfig
from pi.nodes.joblog import FILE as JOBLOG_FILE
from pi.nodes.joblog import JobLog
from pi.nodes.openapi import NODES_OPENAPI
from pi.nodes.registry import FILE as REGISTRY_FILE
from pi.nodes.registry import Registry
from pi.nodes.service import NodeService, NotFound
from pi.ratelimit import TokenBucket

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", NodeService)
NODE_NONCES = web.AppKey("node_nonces", NonceCache)
NOT_BEFORE = web.AppKey("not_before", float)
ADMIN = web.AppKey("admin", Verifier)
BUCKETS = web.AppKey("hello_buckets", OrderedDict)
NODES = web.AppKey("nodes_config", NodesConfig)
STARTED = web.AppKey("started", float)
NONCES_FILE = "node-nonces.json"
# Bodies are a few hundred bytes; a node never sends more than this.
MAX_BODY_BYTES = 16 * 1024
# Hello buckets remembered (one per client address): bounded against address floods.
MAX_BUCKETS = 1024
HELLO_BURST = 3
# Loops that feed the systemd watchdog.
WATCHDOG_LOOPS = ("node",)
# The scheduling tick: a due job waits at most this plus one poll.
MAX_TICK_S = 1.0
# A moving number in nodes.json is at most this old (the card is written less often).
READINGS_PUBLISH_S = 10.0
# The connection guard: 20 nodes and a CLI, each with at most a few connections.
MAX_CONNECTIONS = 256
MAX_CLIENT_CONNECTIONS = 16


def build_app(service: NodeService, nodes: NodesConfig, key: bytes, *,
              nonces: NonceCache | None = None, not_before: float | None = None,
              clock: Callable[[], float] = time.time) -> web.Application:
    app = make_app(MAX_BODY_BYTES, None)
    app[SERVICE] = service
    app[NODES] = nodes
    app[NODE_NONCES] = nonces or NonceCache()
    app[NOT_BEFORE] = float(not_before if not_before is not None else int(clock()))
    app[ADMIN] = Verifier(key, clock=clock, not_before=int(clock()))
    app[BUCKETS] = OrderedDict()
    app[STARTED] = time.monotonic()
    p = wire.PREFIX
    app.router.add_get(f"{p}/health", health)
    app.router.add_get(f"{p}/openapi.json", openapi)
    app.router.add_post(f"{p}/hello", hello)
    app.router.add_get(f"{p}/admin/nodes", admin_nodes)
    app.router.add_post(f"{p}/admin/approve", admin_approve)
    app.router.add_post(f"{p}/admin/remove", admin_remove)
    app.router.add_post(f"{p}/admin/rename", admin_rename)
    app.router.add_get(f"{p}/admin/jobs", admin_jobs)
    app.router.add_post(f"{p}/admin/jobs", admin_job_add)
    app.router.add_post(f"{p}/admin/jobs/rm", admin_job_rm)
    app.router.add_post(p + "/{hwid}/poll", poll)
    app.router.add_post(p + "/{hwid}/report", report)
    return app


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "version": __version__,
                              "uptime_s": round(time.monotonic() - request.app[STARTED], 3)})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(NODES_OPENAPI)


async def hello(request: web.Request) -> web.Response:
    """Open: an unpaired (or paired, key lost) node introduces itself."""
    remote = request.remote or "?"
    bucket = _bucket(request.app, remote)
    if not bucket.allow(time.monotonic()):
        retry = bucket.retry_after()
        response = json_error(429, "rate_limited", f"too many hellos from {remote}; retry in "
                              f"{retry:.0f} s", retry_after_s=max(1, round(retry)))
        response.headers["Retry-After"] = str(max(1, round(retry)))
        return response
    message = wire.parse(await json_body(request), wire.Hello)
    return web.json_response(request.app[SERVICE].hello(message, remote, time.time()))


def _bucket(app: web.Application, remote: str) -> TokenBucket:
    buckets: OrderedDict[str, TokenBucket] = app[BUCKETS]
    bucket = buckets.get(remote)
    if bucket is None:
        rate = app[NODES].hello_per_min
        bucket = buckets[remote] = TokenBucket(rate_per_min=rate, burst=min(HELLO_BURST, rate))
        while len(buckets) > MAX_BUCKETS:
            buckets.popitem(last=False)
    buckets.move_to_end(remote)
    return bucket


async def _verify_node(request: web.Request) -> str:
    """The node's hwid once its request is signed with its own key; AuthError (401) if not."""
    hwid = request.match_info["hwid"]
    body = await read_body(request)
    key = request.app[SERVICE].key_of(hwid)
    verifier = Verifier(key, nonces=request.app[NODE_NONCES], not_before=request.app[NOT_BEFORE])
    verifier.verify(request.headers.get("Authorization"), request.method,
                    request.rel_url.raw_path_qs, body)
    return hwid


async def poll(request: web.Request) -> web.Response:
    hwid = await _verify_node(request)
    wire.parse(await json_body(request), wire.Poll)
    return web.json_response(request.app[SERVICE].poll(hwid, time.time()))


async def report(request: web.Request) -> web.Response:
    hwid = await _verify_node(request)
    message = wire.parse(await json_body(request), wire.Report)
    return web.json_response(request.app[SERVICE].report(hwid, message, time.time()))


# -- admin: the CLI on this Pi ---------------------------------------------------------------------

async def _verify_admin(request: web.Request) -> dict[str, object]:
    try:
        loopback = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise web.HTTPForbidden(text="the admin endpoints answer loopback clients only")
    body = await read_body(request)
    request.app[ADMIN].verify(request.headers.get("Authorization"), request.method,
                              request.rel_url.raw_path_qs, body)
    return await json_body(request)


def _admin(handler: Callable[[NodeService, dict[str, object]], object]) -> \
        Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def route(request: web.Request) -> web.StreamResponse:
        data = await _verify_admin(request)
        try:
            answer = handler(request.app[SERVICE], data)
        except NotFound as exc:
            return json_error(404, "not_found", str(exc))
        request.app[SERVICE].changed = True
        return web.json_response(answer)
    route.__name__ = handler.__name__
    return route


def _str(data: dict[str, object], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError("expected a non-empty string", key)
    return value


def _nodes(service: NodeService, data: dict[str, object]) -> object:
    return {"nodes": [msgspec.to_builtins(e) for e in service.entries(time.time())]}


def _approve(service: NodeService, data: dict[str, object]) -> object:
    node = service.approve(_str(data, "hwid") or "", _str(data, "code") or "",
                           _str(data, "name") or "", _str(data, "role", required=False),
                           time.time())
    return {"hwid": node.hwid, "name": node.name, "role": node.role}


def _remove(service: NodeService, data: dict[str, object]) -> object:
    node = service.remove(_str(data, "node") or "")
    return {"removed": node.hwid, "name": node.name}


def _rename(service: NodeService, data: dict[str, object]) -> object:
    node = service.rename(_str(data, "node") or "", _str(data, "name") or "")
    return {"hwid": node.hwid, "name": node.name}


def _jobs(service: NodeService, data: dict[str, object]) -> object:
    return {"jobs": service.job_list()}


def _job_add(service: NodeService, data: dict[str, object]) -> object:
    job = data.get("job")
    if not isinstance(job, dict):
        raise ValidationError("expected an object", "job")
    return {"added": service.add_job(job, time.time()).id}


def _job_rm(service: NodeService, data: dict[str, object]) -> object:
    service.remove_job(_str(data, "id") or "")
    return {"removed": data["id"]}


admin_nodes = _admin(_nodes)
admin_approve = _admin(_approve)
admin_remove = _admin(_remove)
admin_rename = _admin(_rename)
admin_jobs = _admin(_jobs)
admin_job_add = _admin(_job_add)
admin_job_rm = _admin(_job_rm)


# -- the daemon -------------------------------------------------------------------------------------

def open_service(config: PiConfig) -> NodeService:
    nodes = config.nodes
    assert nodes is not None
    tz = weekly.zone(config.schedule.timezone)
    return NodeService(nodes, Registry(config.private_dir / REGISTRY_FILE),
                       JobLog(config.private_dir / JOBLOG_FILE), tz)


async def run(config: PiConfig, *, ready: Callable[[], None] = lambda: None,
              kick: Callable[[str], None] = lambda name: None) -> None:
    """Run the node daemon until cancelled."""
    nodes = config.nodes
    assert nodes is not None, "run only when [nodes] is configured"
    key = config.secrets().handshake_key
    service = open_service(config)
    store = NonceStore(config.private_dir)
    store.path = config.private_dir / NONCES_FILE
    restored = store.verifier(b"")
    app = build_app(service, nodes, key, nonces=restored.nonces, not_before=restored.not_before)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        host, port = nodes.listen
        await GuardedSite(runner, host, port, Guard(limits_for(MAX_CONNECTIONS,
                                                               MAX_CLIENT_CONNECTIONS),
                                                    name="node")).start()
        log.info("node daemon listening on %s:%d; %d approved node(s), %d job(s)", host, port,
                 len(service.registry.nodes()), len(service.jobs))
        ready()
        await _loop(config, service, kick)
    finally:
        await runner.cleanup()
        store.save(Verifier(b"", nonces=app[NODE_NONCES], not_before=app[NOT_BEFORE]))
        service.joblog.close()
        service.registry.close()


async def _loop(config: PiConfig, service: NodeService, kick: Callable[[str], None]) -> None:
    nodes = config.nodes
    assert nodes is not None
    path: Path = config.public_dir / documents.FILES[NodesDocument]
    quiet = QuietLogger(log)
    tick = min(MAX_TICK_S, nodes.poll_s / 2)
    published = 0.0
    while True:
        now = time.time()
        service.tick(now)
        # State changes at once; numbers that move (temperatures) at most every
        # READINGS_PUBLISH_S; and the whole file every publish_interval_s regardless.
        due = now - published >= nodes.publish_interval_s or (
            service.readings_changed and now - published >= min(READINGS_PUBLISH_S,
                                                                nodes.publish_interval_s))
        if service.changed or due:
            document = service.document(now)
            await asyncio.to_thread(documents.try_publish, path, document, quiet)
            published = now
        kick("node")
        await asyncio.sleep(tick)
