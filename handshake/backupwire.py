"""The Pi's backup to the host: the route, the archive's layout and what the host answers.

The Pi builds one gzipped tar: ``manifest.json`` first, then ``config/<its config file>``,
``private/<path>`` (sqlite files copied through sqlite's online backup API, the other
private files as they are) and, only with ``include_secrets``, ``secrets/<file>``. It
streams it to ``PUT /api/v1/backup?keep=N`` under a signature that covers the archive's
SHA-256 (``X-Content-SHA256``); the host stores it whole or not at all and keeps the
newest ``keep``. ``edgepair pi restore FILE`` checks every member against the manifest
before it writes a byte.
"""

from __future__ import annotations

import re
import time

import msgspec

PATH = "/api/v1/backup"
SCHEMA = "edgepair.backup/1"
MANIFEST = "manifest.json"
# The manifest lists at most this many members, and is at most this big: a restore reads
# it whole before anything else.
MAX_MEMBERS = 10_000
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
KEEP_MAX = 100
# Member kinds: where restore puts them.
KINDS = ("config", "private", "secrets")
NAME_RE = re.compile(r"^edgepair-pi-(\d{8}T\d{6}Z)(-\d+)?\.tar\.gz$")


def archive_name(at: float, n: int = 0) -> str:
    """The name the host stores a backup under: its UTC receive time (and a counter)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    return f"edgepair-pi-{stamp}{f'-{n}' if n else ''}.tar.gz"


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One file in the archive: its member name, its kind, size and SHA-256 (hex)."""

    name: str
    kind: str
    bytes: int
    sha256: str
    sqlite: bool = False  # copied with the online backup API (a consistent snapshot)


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    schema: str = SCHEMA
    created_at: str
    hostname: str
    version: str
    config_file: str  # where the config lived on the Pi (restore's default target)
    state_dir: str
    include_secrets: bool = False
    members: tuple[Member, ...] = ()


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """A backup as the host keeps it (its answer to an upload, and each listed entry)."""

    name: str
    bytes: int
    sha256: str
    received_at: str
