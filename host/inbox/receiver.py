"""``PUT /api/v1/inbox/{path}``: a file from the Pi's inbox, stored whole or not at all.

The body is streamed, so the signature can't cover its bytes: the Pi signs ``sha256(b"")``
as the body hash together with ``X-Content-SHA256`` (covered by the signature, see
``handshake.http.verify_headers_only``). The receiver checks the signature, the name, the
size and the free space before it reads a byte of a large body (a small one is read
first and all of it handled in one worker-thread call), then compares the body with the
announced hash after writing it. The file is fsynced in ``.edgepair-tmp/``, linked under
its final name, the folder fsynced, the receipt committed — and only then does the Pi
hear 201 (or 200 for a file it already sent: idempotent by path + hash, see ``ledger``).
Small files usually come many to a request instead: ``POST /api/v1/inbox`` (``batch``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import deque
from typing import Any

import aiohttp
from aiohttp import web

from handshake import inboxwire
from handshake.http import CONTENT_SHA256, json_error, verify_headers_only
from host import activity
from host.config import HostConfig
from host.inbox import batch, names, store
from host.inbox.config import HostInboxConfig
from host.inbox.ledger import Ledger, Receipt
from host.inbox.state import RECEIVER_KEY, Receiver, unavailable
from host.routes import OPENAPI_PATHS_KEY, PREFIX, SIGNED, add_route

log = logging.getLogger(__name__)

# Any characters, newlines too (the handler refuses control characters with a reason).
ROUTE = f"{PREFIX}/inbox/{{path:[\\s\\S]*}}"
DOC_PATH = f"{PREFIX}/inbox/{{path}}"
_RAW_PREFIX = f"{PREFIX}/inbox/"
# Bodies up to this size are read at once and stored in one worker-thread call.
SMALL_FILE_BYTES = inboxwire.SMALL_FILE_BYTES
# Large bodies are written in batches this big: few thread hops, little memory.
CHUNK_BYTES = 1024 * 1024
# Batches written or hashed behind the network at most: a few MiB of memory per upload.
WRITES_AHEAD = 4
# writev takes at most IOV_MAX (1024) pieces; a slow sender delivers many small ones.
MAX_PIECES = 512
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_CLIENT_GONE = (ConnectionError, asyncio.IncompleteReadError, aiohttp.ClientError)




def add_routes(app: web.Application, config: HostConfig) -> None:
    """Serve the inbox when the host's config has ``[inbox]``."""
    inbox: HostInboxConfig | None = config.inbox
    if inbox is None:
        return
    receiver = Receiver(inbox, config.host.state_dir / "private" / "inbox-receipts.sqlite3",
                        config.public_dir / "inbox-received.json")
    app[RECEIVER_KEY] = receiver
    app.cleanup_ctx.append(receiver.context)
    add_route(app, "PUT", ROUTE, put_file, OPERATION)
    add_route(app, "POST", f"{PREFIX}/inbox", batch.post_batch, batch.OPERATION)
    # OpenAPI names the path parameter without aiohttp's regular expression.
    paths = app[OPENAPI_PATHS_KEY]
    paths[DOC_PATH] = paths.pop(ROUTE)


async def put_file(request: web.Request) -> web.StreamResponse:
    """Store one file from the Pi's inbox (see the module docstring)."""
    receiver = request.app[RECEIVER_KEY]
    config, ledger = receiver.config, receiver.ledger
    sha256 = await verify_headers_only(request)
    if ledger is None:
        return unavailable(receiver)
    try:
        parts = names.parse(request.rel_url.raw_path.removeprefix(_RAW_PREFIX))
    except names.PathRejected as exc:
        return json_error(exc.status, exc.code, str(exc))
    path = "/".join(parts)
    length = request.content_length
    if length is None:
        return json_error(411, "length_required", "Content-Length is required")
    if length > config.max_file_bytes:
        return json_error(413, "file_too_large", f"{path}: {length} bytes is more than "
                          f"[inbox] max_file_bytes ({config.max_file_bytes})")
    try:
        with activity.busy("inbox upload"):
            receipt, duplicate = await _receive(request, receiver, ledger, parts, sha256, length)
    except DiskFull as exc:
        if exc.free is None:
            log.warning("%s: inbox disk full; nothing stored", path)
        return _disk_full(path, length, exc.free, config.min_free_bytes)
    except names.PathRejected as exc:
        return json_error(exc.status, exc.code, str(exc))
    except store.ContentMismatch as exc:
        log.warning("%s: %s", path, exc)
        return json_error(422, "content_mismatch", f"{path}: {exc}")
    except _CLIENT_GONE as exc:
        log.info("%s: upload interrupted (%s); nothing stored", path, type(exc).__name__)
        return json_error(400, "incomplete_body", f"{path}: the body ended early")
    except OSError as exc:
        log.warning("%s: cannot store: %s", path, exc)
        return json_error(500, "storage_error", f"{path}: cannot store: {exc.strerror or exc}")
    receiver.changed()
    log.log(logging.DEBUG if length <= SMALL_FILE_BYTES else logging.INFO,
            "%s: %s (%d bytes) as %s", path, "already here" if duplicate else "stored", length,
            receipt.stored_as)
    return _answer(receipt, duplicate=duplicate)


class DiskFull(Exception):
    """No room for the file: ``free`` bytes left (None: the write itself failed)."""

    def __init__(self, free: int | None) -> None:
        self.free = free
        super().__init__(free)


async def _receive(request: web.Request, receiver: Receiver, ledger: Ledger,
                   parts: tuple[str, ...], sha256: str, length: int) -> tuple[Receipt, bool]:
    """Known already, or written to a temp file, checked, placed, recorded: (receipt, dup)."""
    config = receiver.config
    if length <= SMALL_FILE_BYTES:  # one call on the file thread for all of it
        data = await request.content.readexactly(length) if length else b""
        return await receiver.run(_store_small, config, ledger, data, parts, sha256)
    receipt = await receiver.run(_known, config, ledger, parts, sha256, length)
    if receipt is not None:  # answered before the (large) body is read
        return receipt, True
    upload = await receiver.run(store.Upload, config.dir)
    pending: deque[asyncio.Future[None]] = deque()
    try:
        batch: list[bytes] = []
        batched = 0
        async for chunk in request.content.iter_any():  # no copies to join pieces
            batch.append(chunk)
            batched += len(chunk)
            if batched >= CHUNK_BYTES or len(batch) >= MAX_PIECES:
                if len(pending) >= WRITES_AHEAD:
                    await pending.popleft()
                # Written and hashed (two threads, each in order) while more arrives.
                pending.append(asyncio.ensure_future(_write_and_hash(receiver, upload, batch)))
                batch, batched = [], 0
        if batch:
            pending.append(asyncio.ensure_future(_write_and_hash(receiver, upload, batch)))
        while pending:
            await pending.popleft()
        if upload.size != length:
            raise asyncio.IncompleteReadError(b"", length)
        return await receiver.run(_commit, upload, ledger, parts, sha256)
    finally:
        if pending:
            # The file threads must be out of the file before it is closed.
            await asyncio.wait(pending)
            for future in pending:
                if not future.cancelled():
                    future.exception()  # retrieved: what failed was raised or no longer matters
        await receiver.run(upload.discard)


def _known(config: HostInboxConfig, ledger: Ledger, parts: tuple[str, ...], sha256: str,
           length: int) -> Receipt | None:
    """The receipt of an earlier send; else DiskFull when the file would not fit."""
    receipt = ledger.lookup("/".join(parts), sha256)
    if receipt is None:
        free = store.free_bytes(config.dir)
        if free - length < config.min_free_bytes:
            raise DiskFull(free)
    return receipt


def _store_small(config: HostInboxConfig, ledger: Ledger, data: bytes, parts: tuple[str, ...],
                 sha256: str) -> tuple[Receipt, bool]:
    """A small file in one worker-thread call: receipt, or temp file, fsync, check, place."""
    receipt = _known(config, ledger, parts, sha256, len(data))
    if receipt is not None:
        return receipt, True
    upload = store.Upload(config.dir)
    try:
        _write(upload, [data])
        return _commit(upload, ledger, parts, sha256)
    finally:
        upload.discard()


async def _write_and_hash(receiver: Receiver, upload: store.Upload, pieces: list[bytes]) -> None:
    await asyncio.gather(receiver.run(_write, upload, pieces, False),
                         receiver.run_hash(upload.hash, pieces))


def _write(upload: store.Upload, data: list[bytes], hash_too: bool = True) -> None:
    try:
        upload.write(data, hash_too)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFull(None) from exc
        raise


def _commit(upload: store.Upload, ledger: Ledger, parts: tuple[str, ...],
            sha256: str) -> tuple[Receipt, bool]:
    try:
        upload.finish(sha256)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFull(None) from exc
        raise
    stored_as, duplicate = upload.place(parts, sha256)
    receipt = ledger.record(Receipt("/".join(parts), sha256, upload.size, stored_as, time.time()))
    return receipt, duplicate


def _answer(receipt: Receipt, *, duplicate: bool) -> web.Response:
    return web.json_response({**receipt.to_json(), "duplicate": duplicate},
                             status=200 if duplicate else 201)


def _disk_full(path: str, length: int, free: int | None, reserve: int) -> web.Response:
    have = "" if free is None else f" ({free} bytes free"
    have += "" if free is None else f", [inbox] min_free_bytes keeps {reserve})"
    return json_error(507, "insufficient_storage",
                      f"{path}: the host's inbox disk is full: {length} bytes do not fit{have}")


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RECEIPT: dict[str, Any] = {
    "type": "object",
    "required": ["path", "sha256", "bytes", "stored_as", "received_at", "duplicate"],
    "properties": {
        "path": {"type": "string"}, "sha256": {"type": "string"}, "bytes": {"type": "integer"},
        "stored_as": {"type": "string", "description": "Relative path in the host's inbox."},
        "received_at": {"type": "string", "format": "date-time"},
        "duplicate": {"type": "boolean"},
    },
}
OPERATION: dict[str, Any] = {
    "operationId": "putInboxFile",
    "summary": "A file from the Pi's inbox, stored only after fsync and a hash match (signed).",
    "description": "The signature covers X-Content-SHA256 and signs sha256(\"\") as the body "
                   "hash: the body is streamed and checked against the header after it is "
                   "written. Idempotent by path + hash.",
    "security": SIGNED,
    "parameters": [
        {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "Percent-encoded relative path; folders are created."},
        {"name": CONTENT_SHA256, "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    ],
    # An empty body (Content-Length: 0) is an empty file: HTTP can't tell it from none.
    "requestBody": {"required": False, "description": "The file's bytes; none: an empty file.",
                    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                        "format": "binary"}}}},
    "responses": {
        "201": _json("Stored.", _RECEIPT),
        "200": _json("Already received (by path and hash): nothing stored again.", _RECEIPT),
        "400": {"description": "Bad path, NUL byte, non-UTF-8 name, or bad X-Content-SHA256."},
        "401": {"description": "Missing, wrong, stale or replayed signature."},
        "409": {"description": "A file stands where a folder is needed."},
        "411": {"description": "No Content-Length."},
        "413": {"description": "Larger than [inbox] max_file_bytes."},
        "414": {"description": "A name or the path is too long."},
        "422": {"description": "The body does not match X-Content-SHA256."},
        "503": {"description": "The inbox folder or its ledger is unusable (see the log)."},
        "507": {"description": "The inbox disk is full; nothing stored."},
    },
}
