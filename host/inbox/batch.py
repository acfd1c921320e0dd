"""``POST /api/v1/inbox``: many small files in one signed request.

Per file, the PUT path costs an HTTP exchange, a worker-thread call and two fsyncs; for
10,000 photos' thumbnails that is most of the time. A batch carries up to
MAX_BATCH_FILES files in one body, framed as ``handshake.inboxwire`` says. The body is
small ([host] max_body_bytes), so the ordinary signature covers all of it; each file is
also checked against its own SHA-256. Every file gets the outcome its own PUT would have
had (201 stored, 200 already here, 4xx, 507), in order.
The files are written to temp files, fsynced together, linked into place, their folders
fsynced once each and all receipts committed in one transaction before the answer.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from handshake import inboxwire
from handshake.http import read_body, signed
from host import activity
from host.inbox import names, store
from host.inbox.config import HostInboxConfig
from host.inbox.ledger import Ledger, Receipt
from host.inbox.state import RECEIVER_KEY, unavailable

MAX_BATCH_FILES = inboxwire.MAX_BATCH_FILES
CONTENT_TYPE = inboxwire.CONTENT_TYPE


@dataclass(slots=True)
class Item:
    """One file of a batch and, once decided, its outcome."""

    raw_path: str
    sha256: str
    data: bytes
    parts: tuple[str, ...] = ()
    upload: store.Upload | None = None
    result: dict[str, Any] | None = None

    def fail(self, status: int, code: str, message: str) -> None:
        self.result = {"path": self.raw_path, "status": status,
                       "error": {"code": code, "message": message}}

    def done(self, receipt: Receipt, duplicate: bool) -> None:
        self.result = {**receipt.to_json(), "status": 200 if duplicate else 201,
                       "duplicate": duplicate}


def parse(body: bytes) -> list[Item]:
    """Split a batch body into items; ValidationError (400) when the framing is broken."""
    return [Item(f.path, f.sha256, f.data) for f in inboxwire.decode_batch(body)]


@signed
async def post_batch(request: web.Request) -> web.StreamResponse:
    """Store a batch of small files from the Pi's inbox (see the module docstring)."""
    receiver = request.app[RECEIVER_KEY]
    ledger = receiver.ledger
    if ledger is None:
        return unavailable(receiver)
    with activity.busy("inbox upload"):
        items = parse(await read_body(request))
        await receiver.run(_store, receiver.config, ledger, items)
    receiver.changed()
    return web.json_response({"files": [item.result for item in items]})


def _store(config: HostInboxConfig, ledger: Ledger, items: list[Item]) -> None:
    """All of a batch in one worker-thread call (batches in parallel share the fsyncs)."""
    folders = store.Folders(config.dir)
    try:
        _prepare(config, ledger, items, folders)
        written = [item for item in items if item.upload is not None]
        if len(written) > 1 and store.syncfs(folders.root_fd):
            durable = written  # one flush for all (it also makes their folders durable)
        else:
            durable = [item for item in written if _fsync(item) is None]
        _commit(config, ledger, durable)
    finally:
        for item in items:
            if item.upload is not None:
                item.upload.discard()
                item.upload = None
        folders.close()


def _prepare(config: HostInboxConfig, ledger: Ledger, items: list[Item],
             folders: store.Folders) -> None:
    """Names, hashes, receipts and free space; new files go to temp files (no fsync yet)."""
    new: list[Item] = []
    for item in items:
        try:
            item.parts = names.parse(item.raw_path)
        except names.PathRejected as exc:
            item.fail(exc.status, exc.code, str(exc))
            continue
        if len(item.data) > config.max_file_bytes:
            item.fail(413, "file_too_large", f"{len(item.data)} bytes is more than [inbox] "
                      f"max_file_bytes ({config.max_file_bytes})")
        elif hashlib.sha256(item.data).hexdigest() != item.sha256:
            item.fail(422, "content_mismatch", "the bytes do not match their sha256")
        elif (receipt := ledger.lookup("/".join(item.parts), item.sha256)) is not None:
            item.done(receipt, duplicate=True)
        else:
            new.append(item)
    free = store.free_bytes(config.dir) if new else 0
    for item in new:
        free -= len(item.data)
        if free < config.min_free_bytes:
            item.fail(507, "insufficient_storage", "the host's inbox disk is full")
            continue
        try:
            item.upload = store.Upload(folders)
            item.upload.write([item.data])
        except OSError as exc:
            _failed(item, exc)
            if item.upload is not None:  # a partly written temp file must never be placed
                item.upload.discard()
                item.upload = None


def _fsync(item: Item) -> OSError | None:
    assert item.upload is not None
    try:
        os.fsync(item.upload.fd)
    except OSError as exc:
        _failed(item, exc)
        return exc
    return None


def _commit(config: HostInboxConfig, ledger: Ledger, items: list[Item]) -> None:
    """Link the durable temp files into place, fsync their folders, commit the receipts."""
    placed: list[tuple[Item, str, bool]] = []
    for item in items:
        assert item.upload is not None
        if item.upload.size != len(item.data):  # never a partial file at a final path
            item.fail(500, "storage_error", f"wrote {item.upload.size} of {len(item.data)} bytes")
            continue
        try:
            item.upload.check(item.sha256)
            stored_as, duplicate = item.upload.place(item.parts, item.sha256, sync=False)
        except store.ContentMismatch as exc:
            item.fail(500, "storage_error", str(exc))
            continue
        except names.PathRejected as exc:
            item.fail(exc.status, exc.code, str(exc))
            continue
        except OSError as exc:
            _failed(item, exc)
            continue
        placed.append((item, stored_as, duplicate))
    if not placed:
        return
    store.sync_folders(config.dir, [item.parts for item, _, _ in placed])
    now = time.time()
    receipts = ledger.record_many([Receipt("/".join(item.parts), item.sha256, len(item.data),
                                           stored_as, now) for item, stored_as, _ in placed])
    for (item, _, duplicate), receipt in zip(placed, receipts, strict=True):
        item.done(receipt, duplicate)


def _failed(item: Item, exc: OSError) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        item.fail(507, "insufficient_storage", "the host's inbox disk is full")
    else:
        item.fail(500, "storage_error", f"cannot store: {exc.strerror or exc}")


OPERATION: dict[str, Any] = {
    "operationId": "postInboxBatch",
    "summary": "Many small files from the Pi's inbox in one request (signed).",
    "description": "Body: per file one JSON line {\"path\", \"bytes\", \"sha256\"} and then "
                   "exactly that many bytes. Each file is answered as its own PUT would be.",
    "security": [{"EdgePair": []}],
    # An empty body (Content-Length: 0) is an empty batch: HTTP can't tell it from none.
    "requestBody": {"required": False, "description": "The framed files; none: no files.",
                    "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {
        "200": {"description": "One outcome per file, in order.", "content": {
            "application/json": {"schema": {"type": "object", "required": ["files"],
                                            "properties": {"files": {"type": "array"}}}}}},
        "400": {"description": "Broken framing or more than MAX_BATCH_FILES files."},
        "401": {"description": "Missing, wrong, stale or replayed signature."},
        "413": {"description": "Larger than [host] max_body_bytes."},
        "503": {"description": "The inbox folder or its ledger is unusable."},
    },
}
