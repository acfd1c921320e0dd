"""The inbox wire format between the Pi's inbox and the host's receiver.

One file: ``PUT /api/v1/inbox/{percent-encoded path}`` with ``X-Content-SHA256``. Small
files (≤ SMALL_FILE_BYTES) go many to a request: ``POST /api/v1/inbox`` with CONTENT_TYPE,
per file one line of JSON ``{"path": "<percent-encoded relative path>", "bytes": N,
"sha256": "<hex>"}`` and then exactly N bytes; at most MAX_BATCH_FILES files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

import msgspec

from handshake.errors import ValidationError
from handshake.messages import loads

FILE_PATH_PREFIX = "/api/v1/inbox/"
BATCH_PATH = "/api/v1/inbox"
CONTENT_TYPE = "application/x-edgepair-inbox-batch"
# Files up to this size are read, hashed and sent in one piece (and batched).
SMALL_FILE_BYTES = 256 * 1024
# Enough files to share one round of the host's fsyncs; few enough that one answer stays small.
MAX_BATCH_FILES = 256
_HEX = frozenset("0123456789abcdef")


class BatchHeader(msgspec.Struct, frozen=True):
    """The JSON line before each file of a batch."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class BatchFile:
    """One file of a batch as the host reads it (``path`` still percent-encoded)."""

    path: str
    sha256: str
    data: bytes


def encode_path(rel: str) -> str:
    """A relative path as it travels: its file-system bytes, percent-encoded, ``/`` kept."""
    return quote(os.fsencode(rel), safe="/")


def encode_batch(files: Iterable[tuple[str, bytes, str]]) -> bytes:
    """A batch body from ``(relative path, bytes, sha256)`` per file."""
    pieces = []
    for rel, data, sha256 in files:
        pieces += [msgspec.json.encode(BatchHeader(encode_path(rel), len(data), sha256)), b"\n",
                   data]
    return b"".join(pieces)


def decode_batch(body: bytes) -> list[BatchFile]:
    """Split a batch body into its files; ValidationError when the framing is broken."""
    files: list[BatchFile] = []
    pos = 0
    while pos < len(body):
        n = len(files) + 1
        end = body.find(b"\n", pos)
        if end < 0:
            raise ValidationError(f"file {n}: header line without a newline")
        try:
            header = loads(body[pos:end])
        except ValidationError as exc:
            raise ValidationError(f"file {n}: header is not JSON: {exc}") from None
        if not (isinstance(header, dict) and isinstance(header.get("path"), str)
                and isinstance(header.get("bytes"), int) and header["bytes"] >= 0
                and isinstance(header.get("sha256"), str) and len(header["sha256"]) == 64
                and _HEX.issuperset(header["sha256"])):
            raise ValidationError(f"file {n}: expected a header "
                                  '{"path": str, "bytes": int ≥ 0, "sha256": 64 hex digits}')
        start, pos = end + 1, end + 1 + header["bytes"]
        if pos > len(body):
            raise ValidationError(f"file {n}: body ends before its {header['bytes']} bytes")
        files.append(BatchFile(header["path"], header["sha256"], body[start:pos]))
        if len(files) > MAX_BATCH_FILES:
            raise ValidationError(f"more than {MAX_BATCH_FILES} files in one batch")
    return files
