"""``PUT /api/v1/backup?keep=N`` and ``GET /api/v1/backup``: the Pi's backups (signed).

The body is streamed (see ``handshake.http.verify_headers_only``): signature, size and
free space are checked before a byte is read, the body is hashed as it is written, and the
Pi hears 201 with the stored name and hash only once the archive is fsynced and renamed
into place (``store``). One upload at a time; a second one gets 409.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from handshake.backupwire import KEEP_MAX, PATH, Stored
from handshake.http import json_error, verify_headers_only, verify_request
from host import activity
from host.backup import store
from host.backup.config import HostBackupConfig
from host.routes import SIGNED, add_route, json_response, ref

log = logging.getLogger(__name__)

# Large bodies are written in batches this big: few thread hops, little memory.
CHUNK_BYTES = 1024 * 1024
MAX_PIECES = 512
# The smallest gzipped tar with a manifest is far larger; an empty body is a mistake.
MIN_BYTES = 64
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_CLIENT_GONE = (ConnectionError, asyncio.IncompleteReadError, aiohttp.ClientError)


class Backups:
    """The backup folder, its one file thread and the one-upload-at-a-time lock."""

    def __init__(self, config: HostBackupConfig, state_dir: Path) -> None:
        self.config = config
        self.folder = config.directory(state_dir)
        self.lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup")

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def context(self, app: web.Application) -> Any:
        removed = await self.run(store.clean_temp, self.folder)
        if removed:
            log.info("backup: removed %d partial upload(s) a crash left in %s", len(removed),
                     self.folder)
        yield
        self._executor.shutdown(wait=True)


BACKUPS_KEY = web.AppKey("backups", Backups)


def add_routes(app: web.Application, config: HostBackupConfig, state_dir: Path) -> None:
    backups = Backups(config, state_dir)
    app[BACKUPS_KEY] = backups
    app.cleanup_ctx.append(backups.context)
    add_route(app, "PUT", PATH, put_backup, PUT_OPERATION)
    add_route(app, "GET", PATH, list_backups, LIST_OPERATION)


def _keep(request: web.Request) -> int | web.Response:
    raw = request.query.get("keep")
    if raw is None:
        return json_error(400, "invalid", f"keep: expected an integer 1…{KEEP_MAX} "
                          "(how many backups the host keeps)", field="keep")
    try:
        keep = int(raw)
    except ValueError:
        keep = 0
    if not 1 <= keep <= KEEP_MAX:
        return json_error(400, "invalid", f"keep: expected an integer 1…{KEEP_MAX}, got {raw!r}",
                          field="keep")
    return keep


async def put_backup(request: web.Request) -> web.StreamResponse:
    backups = request.app[BACKUPS_KEY]
    sha256 = await verify_headers_only(request)
    keep = _keep(request)
    if isinstance(keep, web.Response):
        return keep
    length = request.content_length
    if length is None:
        return json_error(411, "length_required", "Content-Length is required")
    if length < MIN_BYTES:
        return json_error(400, "invalid", f"a {length}-byte body is not a backup archive "
                          f"(a gzipped tar is at least {MIN_BYTES} bytes)")
    if length > backups.config.max_bytes:
        return json_error(413, "backup_too_large", f"a {length}-byte backup is more than "
                          f"[backup] max_bytes ({backups.config.max_bytes}) on the host")
    if backups.lock.locked():
        return json_error(409, "busy", "another backup is being received; send it later")
    async with backups.lock:
        free = await backups.run(store.free_bytes, backups.folder)
        if free - length < backups.config.min_free_bytes:
            return _disk_full(length, free, backups.config.min_free_bytes)
        try:
            with activity.busy("backup upload"):
                stored, removed = await _receive(request, backups, sha256, length, keep)
        except store.ContentMismatch as exc:
            log.warning("backup: %s; nothing stored", exc)
            return json_error(422, "content_mismatch", str(exc))
        except _CLIENT_GONE as exc:
            log.info("backup: upload interrupted (%s); nothing stored", type(exc).__name__)
            return json_error(400, "incomplete_body", "the body ended early; nothing stored")
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                return _disk_full(length, None, backups.config.min_free_bytes)
            log.warning("backup: cannot store: %s", exc)
            return json_error(500, "storage_error", f"cannot store: {exc.strerror or exc}")
    log.info("backup: stored %s (%d bytes)%s", stored.name, stored.bytes,
             f"; removed {', '.join(removed)}" if removed else "")
    return web.json_response({**msgspec.to_builtins(stored), "removed": removed}, status=201)


async def _receive(request: web.Request, backups: Backups, sha256: str, length: int,
                   keep: int) -> tuple[Stored, list[str]]:
    upload = await backups.run(store.Upload, backups.folder)
    try:
        batch: list[bytes] = []
        batched = 0
        async for chunk in request.content.iter_any():
            batch.append(chunk)
            batched += len(chunk)
            if batched >= CHUNK_BYTES or len(batch) >= MAX_PIECES:
                await backups.run(upload.write, batch)
                batch, batched = [], 0
        if batch:
            await backups.run(upload.write, batch)
        if upload.size != length:
            raise asyncio.IncompleteReadError(b"", length)
        result: tuple[Stored, list[str]] = await backups.run(
            upload.commit, sha256, keep, time.time())
        return result
    finally:
        await backups.run(upload.discard)


async def list_backups(request: web.Request) -> web.StreamResponse:
    await verify_request(request)
    backups = request.app[BACKUPS_KEY]
    stored = await backups.run(store.listing, backups.folder)
    return web.json_response({"folder": str(backups.folder),
                              "backups": [msgspec.to_builtins(s) for s in stored]})


def _disk_full(length: int, free: int | None, reserve: int) -> web.Response:
    have = "" if free is None else f" ({free} bytes free, [backup] min_free_bytes keeps {reserve})"
    return json_error(507, "insufficient_storage",
                      f"the host's backup disk is full: {length} bytes do not fit{have}")


_STORED: dict[str, Any] = {"type": "object", "required": ["name", "bytes", "sha256", "received_at"],
           "properties": {"name": {"type": "string"}, "bytes": {"type": "integer"},
                          "sha256": {"type": "string"}, "received_at": {"type": "string"}}}
PUT_OPERATION: dict[str, Any] = {
    "operationId": "putBackup",
    "summary": "Store the Pi's backup archive whole or not at all, keep the newest `keep` (signed).",
    "security": SIGNED,
    "parameters": [
        {"name": "keep", "in": "query", "required": True,
         "schema": {"type": "integer", "minimum": 1, "maximum": KEEP_MAX}},
        {"name": "X-Content-SHA256", "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
    "requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                "minLength": MIN_BYTES}}}},
    "responses": {"201": json_response("Stored; the oldest beyond keep removed.", {
        **_STORED, "properties": {**_STORED["properties"],
                                  "removed": {"type": "array", "items": {"type": "string"}}}}),
        "400": json_response("Bad keep, or the body ended early.", ref("Error")),
        "401": json_response("Not signed.", ref("Error")),
        "409": json_response("Another backup is being received.", ref("Error")),
        "413": json_response("Larger than [backup] max_bytes.", ref("Error")),
        "422": json_response("The body is not what was signed.", ref("Error")),
        "507": json_response("No room.", ref("Error"))},
}
LIST_OPERATION: dict[str, Any] = {
    "operationId": "listBackups",
    "summary": "The Pi's backups the host keeps, oldest first (signed).",
    "security": SIGNED,
    "responses": {"200": json_response("The backups.", {
        "type": "object", "required": ["folder", "backups"],
        "properties": {"folder": {"type": "string"},
                       "backups": {"type": "array", "items": _STORED}}})},
}
