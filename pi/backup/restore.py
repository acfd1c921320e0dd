"""``edgepair pi restore FILE --config F``: a fresh card's state from a backup.

Nothing is written before the whole archive was read and every member matched the
manifest (name, kind, size, SHA-256; no member twice, none missing, none extra, no path
leaving its folder). Then:

- the config: written to ``F`` when ``F`` does not exist yet; an existing ``F`` is kept
  (it may point the state elsewhere) and the archived one is written beside it as
  ``F.from-backup`` when they differ;
- ``private/``: built in ``private.restore-tmp`` (fsynced) and renamed into place; a
  ``private/`` that already holds files is refused without ``--force``, and with it set
  aside as ``private.before-restore-<UTC>`` — never deleted;
- a power history outside ``private/`` goes to ``[power] database``; the secrets (only in
  a backup made with ``include_secrets``) to the secrets file when there is none yet;
- restored files belong to the owner of the state folder (the daemons' user).

The daemons must be stopped: a restore refuses while something answers on the api's port.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tarfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import msgspec

from handshake.backupwire import (
    KINDS,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_MEMBERS,
    SCHEMA,
    Manifest,
    Member,
)
from handshake.errors import FatalError
from pi import config as pi_config
from pi.config import PiConfig
from pi.power.history import database_path

KINDS_HERE = (*KINDS, "database")
READ_CHUNK = 256 * 1024


class RestoreError(FatalError):
    """The archive is not a good backup, or restoring it would overwrite something."""


def verify(archive: Path) -> tuple[Manifest, dict[str, bytes | None]]:
    """Read the whole archive; the manifest, and the small members' bytes (large: None).

    RestoreError naming the first problem; nothing is written.
    """
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            return _verify(archive, tar)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise RestoreError(f"{archive}: not a backup archive, or a damaged one ({exc})") from exc


def _verify(archive: Path, tar: tarfile.TarFile) -> tuple[Manifest, dict[str, bytes | None]]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile() \
            or first.size > MAX_MANIFEST_BYTES:
        raise RestoreError(f"{archive}: no {MANIFEST} first: not an edgepair backup")
    raw = _read(tar, first)
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except msgspec.DecodeError as exc:
        raise RestoreError(f"{archive}: {MANIFEST}: {exc}") from exc
    if manifest.schema != SCHEMA:
        raise RestoreError(f"{archive}: {MANIFEST}: expected schema {SCHEMA}, got "
                           f"{manifest.schema} (made by a newer edgepair?)")
    if len(manifest.members) > MAX_MEMBERS:
        raise RestoreError(f"{archive}: more than {MAX_MEMBERS} members")
    expected: dict[str, Member] = {}
    for member in manifest.members:
        _check_name(archive, member.name, member.kind)
        if member.name in expected:
            raise RestoreError(f"{archive}: {member.name} is listed twice")
        expected[member.name] = member
    small: dict[str, bytes | None] = {}
    for info in tar:  # from the start again: the manifest is the one member to pass over
        if info.offset == first.offset:
            continue
        found = expected.get(info.name)
        if found is None or info.name in small:
            raise RestoreError(f"{archive}: {info.name} is not in the manifest (or twice)")
        if not info.isfile():
            raise RestoreError(f"{archive}: {info.name} is not a regular file")
        digest, size, data = _hash(tar, info)
        if size != found.bytes or digest != found.sha256:
            raise RestoreError(f"{archive}: {info.name} does not match the manifest "
                               f"({size} bytes, SHA-256 {digest}; expected {found.bytes}, "
                               f"{found.sha256})")
        small[info.name] = data
    missing = sorted(set(expected) - set(small))
    if missing:
        raise RestoreError(f"{archive}: missing {', '.join(missing)} (cut short?)")
    return manifest, small


def _check_name(archive: Path, name: str, kind: str) -> None:
    path = PurePosixPath(name)
    if kind not in KINDS_HERE or path.is_absolute() or ".." in path.parts \
            or len(path.parts) < 2 or path.parts[0] != kind or "\\" in name:
        raise RestoreError(f"{archive}: member {name!r} ({kind}) would land outside its folder")


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    assert f is not None
    return f.read()


def _hash(tar: tarfile.TarFile, info: tarfile.TarInfo) -> tuple[str, int, bytes | None]:
    """SHA-256 and size of a member; its bytes too when small (kept for the write)."""
    f = tar.extractfile(info)
    assert f is not None
    digest, size, keep = hashlib.sha256(), 0, info.size <= 4 * 1024 * 1024
    parts: list[bytes] = []
    while chunk := f.read(READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if keep:
            parts.append(chunk)
    return digest.hexdigest(), size, b"".join(parts) if keep else None


def restore(archive: Path, config_path: Path, *, force: bool = False,
            say: Callable[[str], None] = print, now: float | None = None) -> PiConfig:
    """Verify, then restore (see the module docstring); the config it restored under."""
    now = time.time() if now is None else now
    manifest, small = verify(archive)
    say(f"{archive}: a good backup of {manifest.hostname} from {manifest.created_at} "
        f"({len(manifest.members)} files, edgepair {manifest.version})")
    config = _restore_config(manifest, small, config_path, say)
    _refuse_if_running(config)
    config.pi.state_dir.mkdir(parents=True, exist_ok=True)
    _make_room(config, force, now, say)
    _extract(archive, manifest, config)
    restored = [m for m in manifest.members if m.kind in ("private", "database")]
    say(f"private: restored {len(restored)} files into {config.private_dir}")
    _restore_secrets(manifest, small, config, say)
    return config


def _restore_config(manifest: Manifest, small: dict[str, bytes | None], config_path: Path,
                    say: Callable[[str], None]) -> PiConfig:
    member = next((m for m in manifest.members if m.kind == "config"), None)
    archived = small.get(member.name) if member else None
    if not config_path.exists():
        if archived is None:
            raise RestoreError(f"{config_path} does not exist and the backup holds no config")
        _write(config_path, archived, 0o640)
        say(f"config: wrote {config_path} from the backup")
    elif archived is not None and config_path.read_bytes() != archived:
        beside = config_path.with_name(config_path.name + ".from-backup")
        _write(beside, archived, 0o640)
        say(f"config: kept {config_path} (it differs from the backup's; that one is {beside})")
    return pi_config.load(config_path)


def _make_room(config: PiConfig, force: bool, now: float, say: Callable[[str], None]) -> None:
    """An empty private/ is fine; one with state only with --force, and then set aside."""
    private = config.private_dir
    if not private.exists() or not any(private.iterdir()):
        return
    if not force:
        raise RestoreError(f"{private} already holds state ({sum(1 for _ in private.rglob('*'))} "
                           f"entries): pass --force to set it aside and restore")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = config.pi.state_dir / f"private.before-restore-{stamp}"
    private.rename(aside)
    say(f"private: set the old state aside as {aside}")


def _extract(archive: Path, manifest: Manifest, config: PiConfig) -> None:
    """Write private/ in a staging folder, fsync it, rename it into place."""
    state, private = config.pi.state_dir, config.private_dir
    staging = state / "private.restore-tmp"
    if staging.exists():  # a restore cut short before
        shutil.rmtree(staging)
    staging.mkdir(mode=0o750)
    owner = state.stat()
    with contextlib.suppress(PermissionError):
        os.chown(staging, owner.st_uid, owner.st_gid)
    members = {m.name: m for m in manifest.members}
    with tarfile.open(archive, mode="r:gz") as tar:
        for info in tar:
            member = members.get(info.name)  # None for the manifest
            target = None if member is None else _target(config, member.kind, member.name, staging)
            f = tar.extractfile(info) if target is not None else None
            if target is not None and f is not None:
                _write_stream(target, f, 0o640, owner)
    _fsync_tree(staging)
    if private.exists():
        private.rmdir()  # empty: _make_room saw to it
    staging.rename(private)
    _fsync_dir(state)


def _restore_secrets(manifest: Manifest, small: dict[str, bytes | None], config: PiConfig,
                     say: Callable[[str], None]) -> None:
    member = next((m for m in manifest.members if m.kind == "secrets"), None)
    path = config.pi.secrets_file
    if member is None:
        if not path.exists():
            say(f"secrets: the backup has none (include_secrets = false): copy the handshake "
                f"key from the host to {path}")
    elif path.exists():
        say(f"secrets: kept {path} (the backup's copy was not needed)")
    else:
        _write(path, small[member.name] or b"", 0o600)
        say(f"secrets: wrote {path}")


def _target(config: PiConfig, kind: str, name: str, staging: Path) -> Path | None:
    rel = PurePosixPath(name).relative_to(kind)
    if kind == "private":
        return staging.joinpath(*rel.parts)
    if kind == "database" and config.power is not None:
        path = database_path(config.power, config.private_dir)
        if path.name == rel.name and not path.is_relative_to(config.private_dir):
            if path.exists():
                raise RestoreError(f"{path} exists: move it away to restore the power history")
            return path
    return None  # config and secrets are handled apart


def _refuse_if_running(config: PiConfig) -> None:
    host, port = config.api.listen
    probe = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    with socket.socket(socket.AF_INET6 if ":" in probe else socket.AF_INET) as s:
        s.settimeout(1.0)
        if s.connect_ex((probe, port)) == 0:
            raise RestoreError(f"something answers on the api's {probe}:{port}: stop the "
                               f"daemons first (systemctl stop 'edgepair-pi-*')")


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _write_stream(path: Path, f: object, mode: int, owner: os.stat_result) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        while chunk := f.read(READ_CHUNK):  # type: ignore[attr-defined]
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(PermissionError):  # not root: the files are the caller's
        os.chown(path, owner.st_uid, owner.st_gid)
        os.chown(path.parent, owner.st_uid, owner.st_gid)


def _fsync_tree(root: Path) -> None:
    for folder, _, _ in os.walk(root):
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
