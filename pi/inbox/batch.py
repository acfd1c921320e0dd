"""Small files many to a request: ``POST /api/v1/inbox`` (framing: ``handshake.inboxwire``).

One request, one worker-thread call to read them and one to delete what the host
confirmed, instead of one of each per file: for thousands of small files the per-file
exchange, not the bytes, is what takes the time. Each file still counts on its own: the
host answers per file, and the Pi deletes exactly the files confirmed with their hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handshake import inboxwire
from handshake.client import HandshakeClient
from handshake.errors import RequestError
from pi.inbox import upload
from pi.inbox.outcome import FileChanged, Outcome, Refused, Result, classify
from pi.inbox.tracker import Identity

# Files per request (the host takes up to inboxwire.MAX_BATCH_FILES): one flush of its disk for all of them.
BATCH_FILES = 128
# Below the host's default body limit ([host] max_body_bytes = 4 MiB) with room to spare.
BATCH_BYTES = 2 * 1024 * 1024
PATH = inboxwire.BATCH_PATH
CONTENT_TYPE = inboxwire.CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class Read:
    """A small file as read for sending: what it was, its bytes, their hash."""

    rel: str
    identity: Identity
    data: bytes
    sha256: str


def read(root: Path, files: list[tuple[str, bool]]) -> list[Read | Exception]:
    """Read ``(rel, need_proof)`` files (blocking); per file a Read or why not."""
    out: list[Read | Exception] = []
    for rel, need_proof in files:
        try:
            fd, identity, small = upload.open_file(root, rel, True, need_proof)
            os.close(fd)
            if small is None:
                raise FileChanged(f"{rel}: grew past {inboxwire.SMALL_FILE_BYTES} bytes")
            out.append(Read(rel, identity, *small))
        except (FileChanged, Refused, OSError) as exc:
            out.append(exc)
    return out


def body(reads: list[Read]) -> bytes:
    """Per file one JSON line (path percent-encoded, bytes, sha256), then its bytes."""
    return inboxwire.encode_batch((r.rel, r.data, r.sha256) for r in reads)


async def send(client: HandshakeClient, reads: list[Read]) -> list[dict[str, Any]]:
    """POST the batch; the host's outcome per file, in order (RequestError for the batch)."""
    answer = await client.request("POST", PATH, raw=body(reads),
                                  headers={"Content-Type": CONTENT_TYPE})
    files = answer.get("files") if isinstance(answer, dict) else None
    if not isinstance(files, list) or len(files) != len(reads) \
            or not all(isinstance(f, dict) for f in files):
        raise RequestError(502, "bad_answer", f"the host answered a batch of {len(reads)} "
                           f"files with {answer!r:.200}")
    return files


def outcome(r: Read, result: dict[str, Any]) -> Outcome:
    """The host's word on one file: delivered with our hash (not deleted yet) or why not."""
    return classify(Result(r.rel, r.sha256, result.get("status"), result))


def delete(root: Path, reads: list[Read]) -> list[bool]:
    """Delete each confirmed file that is still what was sent (blocking); which went."""
    return [upload.delete_if_unchanged(root, r.rel, r.identity)
            for r in reads]
