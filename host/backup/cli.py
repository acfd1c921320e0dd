"""``edgepair host backups [--verify] [--json]``: the Pi's backups this host keeps."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec

from handshake.util.cliexit import EXIT_FAILED, EXIT_OK
from host.backup import store
from host.config import HostConfig

READ_CHUNK = 1024 * 1024


def backups(config: HostConfig, *, verify: bool, as_json: bool) -> int:
    """List them (oldest first); with ``verify``, exit 1 when an archive is not its hash."""
    folder = config.backup.directory(config.host.state_dir)
    kept = store.listing(folder)
    rows = []
    bad = 0
    for backup in kept:
        row = msgspec.to_builtins(backup)
        if verify:
            row["verified"] = _sha256(folder / backup.name) == backup.sha256
            bad += not row["verified"]
        rows.append(row)
    if as_json:
        print(json.dumps({"folder": str(folder), "backups": rows}, indent=2))
    elif not rows:
        print(f"no backups in {folder} yet (the Pi sends one when the host comes online)")
    else:
        print(f"{len(rows)} backup(s) in {folder}, oldest first:")
        for row in rows:
            state = "" if "verified" not in row else "  ok" if row["verified"] else "  DAMAGED"
            print(f"  {row['name']}  {row['bytes'] / 1e6:8.1f} MB  {row['received_at']}{state}")
        print("restore on the Pi: edgepair pi restore FILE --config /etc/edgepair/pi.toml")
    return EXIT_FAILED if bad else EXIT_OK


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
