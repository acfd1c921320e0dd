"""The Pi's backup archive and its restore, the host's store, and when a backup is due:
a live WAL database is captured whole, every member is checked before a byte is restored,
and nothing that exists is ever overwritten or deleted."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import socket
import sqlite3
import tarfile
import threading
import time
from pathlib import Path

import msgspec
import pytest

from handshake.backupwire import MANIFEST, Manifest, Member
from handshake.errors import ConfigError
from host.backup import store
from pi import config as pi_config
from pi import state as sm
from pi.backup import bundle, restore
from pi.backup.config import BackupConfig
from pi.backup.service import STATE_FILE, BackupService, Outcome, due_in
from tests.helpers import pi_toml

T0 = 1_800_000_000.0


def make_pi(tmp: Path) -> pi_config.PiConfig:
    path = pi_toml(tmp, extra="[backup]\nkeep = 3\n")
    config = pi_config.load(path)
    private = config.private_dir
    (private / "nodes").mkdir(parents=True)
    (private / "control-baseline.json").write_text('{"taken_at": "2026-01-01", "registers": {"142": 1}}')
    (private / "nodes" / "registry.json").write_text('{"nodes": {"1": {"hwid": "ab12"}}}')
    (private / "usage.sqlite3.bad-20260101T000000Z").write_text("a broken file set aside")
    outside = tmp / "outside-secret.txt"
    outside.write_text("never in a backup")
    (private / "link").symlink_to(outside)
    return config


def live_history(config: pi_config.PiConfig) -> sqlite3.Connection:
    """A WAL database with rows only in its -wal file (never checkpointed), still open."""
    db = sqlite3.connect(config.private_dir / "power.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE raw (ts INTEGER PRIMARY KEY, w REAL)")
    db.executemany("INSERT INTO raw VALUES (?, ?)", [(i, i * 0.5) for i in range(5000)])
    db.commit()
    return db


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def test_a_backup_round_trips_onto_a_wiped_card(tmp_path: Path) -> None:
    config = make_pi(tmp_path)
    db = live_history(config)
    try:
        built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
        before = {p.relative_to(config.private_dir).as_posix(): p.read_bytes()
                  for p in config.private_dir.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.suffix == ".json"}
        rows_before = dump(config.private_dir / "power.sqlite3")
    finally:
        db.close()
    names = {m.name: m for m in built.manifest.members}
    assert set(names) == {"config/pi.toml", "private/control-baseline.json",
                          "private/nodes/registry.json", "private/power.sqlite3"}
    assert names["private/power.sqlite3"].sqlite is True
    assert built.manifest.include_secrets is False
    # what the host will check: the archive's own hash
    assert hashlib.sha256(built.path.read_bytes()).hexdigest() == built.sha256
    archive = tmp_path / "backup.tar.gz"
    built.path.rename(archive)
    bundle.clear(config)
    assert not bundle.work_dir(config).exists()

    # the card dies: state and config gone
    config_text = config.file.read_bytes()
    for path in sorted(config.pi.state_dir.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    config.file.unlink()
    said: list[str] = []
    got = restore.restore(archive, config.file, say=said.append)
    assert config.file.read_bytes() == config_text
    assert got.private_dir == config.private_dir
    assert dump(config.private_dir / "power.sqlite3") == rows_before
    assert len(rows_before) > 5000  # the rows that were only in the -wal file came along
    for rel, data in before.items():
        assert (config.private_dir / rel).read_bytes() == data, rel
    assert not (config.private_dir / "link").exists()
    assert not list(config.private_dir.glob("*.bad-*"))
    assert any("a good backup of pi" in line for line in said)
    assert not any("copy the handshake key" in line for line in said)  # the secrets exist


def test_secrets_only_when_asked_and_never_over_an_existing_file(tmp_path: Path) -> None:
    config = make_pi(tmp_path)
    built = bundle.build(config, include_secrets=True, now=T0, hostname="pi")
    assert any(m.kind == "secrets" for m in built.manifest.members)
    archive = tmp_path / "b.tar.gz"
    built.path.rename(archive)
    secrets = config.pi.secrets_file.read_bytes()
    config.pi.secrets_file.unlink()
    shutil.rmtree(config.private_dir)
    restore.restore(archive, config.file, say=lambda _: None)
    assert config.pi.secrets_file.read_bytes() == secrets
    assert config.pi.secrets_file.stat().st_mode & 0o777 == 0o600


def _archive(tmp: Path, members: list[tuple[str, bytes]], manifest: Manifest | None = None,
             manifest_first: bool = True) -> Path:
    path = tmp / "crafted.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        entries = list(members)
        if manifest is not None:
            body = msgspec.json.encode(manifest)
            entries = [(MANIFEST, body), *entries] if manifest_first else [*entries, (MANIFEST, body)]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _manifest(*members: tuple[str, str, bytes]) -> Manifest:
    return Manifest(created_at="2026-12-07T00:00:00Z", hostname="pi", version="x",
                    config_file="/etc/edgepair/pi.toml", state_dir="/var/lib/edgepair",
                    members=tuple(Member(name=n, kind=k, bytes=len(d),
                                         sha256=hashlib.sha256(d).hexdigest())
                                  for n, k, d in members))


@pytest.mark.parametrize(("case", "problem"), [
    ("not_gzip", "not a backup archive"),
    ("no_manifest", "no manifest.json first"),
    ("manifest_last", "no manifest.json first"),
    ("altered", "does not match the manifest"),
    ("extra", "is not in the manifest"),
    ("missing", "missing private/b.json"),
    ("traversal", "would land outside its folder"),
    ("newer", "expected schema edgepair.backup/1"),
    ("truncated", "not a backup archive, or a damaged one"),
])
def test_a_bad_archive_is_refused_before_anything_is_written(
        tmp_path: Path, case: str, problem: str) -> None:
    config = make_pi(tmp_path)
    a, b = b'{"a": 1}', b'{"b": 2}'
    good = _manifest(("private/a.json", "private", a), ("private/b.json", "private", b))
    archive = {
        "not_gzip": lambda: (tmp_path / "x.tar.gz", (tmp_path / "x.tar.gz").write_bytes(b"hello"))[0],
        "no_manifest": lambda: _archive(tmp_path, [("private/a.json", a)]),
        "manifest_last": lambda: _archive(tmp_path, [("private/a.json", a), ("private/b.json", b)],
                                          good, manifest_first=False),
        "altered": lambda: _archive(tmp_path, [("private/a.json", b'{"a": 2}'),
                                               ("private/b.json", b)], good),
        "extra": lambda: _archive(tmp_path, [("private/a.json", a), ("private/b.json", b),
                                             ("private/c.json", b)], good),
        "missing": lambda: _archive(tmp_path, [("private/a.json", a)], good),
        "traversal": lambda: _archive(tmp_path, [("private/../../etc/x", a)],
                                      _manifest(("private/../../etc/x", "private", a))),
        "newer": lambda: _archive(tmp_path, [], msgspec.structs.replace(
            _manifest(), schema="edgepair.backup/2")),
        "truncated": lambda: _truncated(_archive(tmp_path, [("private/a.json", a * 5000),
                                                             ("private/b.json", b)], _manifest(
            ("private/a.json", "private", a * 5000), ("private/b.json", "private", b)))),
    }[case]()
    before = sorted(p.as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(restore.RestoreError, match=problem):
        restore.restore(archive, config.file, force=True, say=lambda _: None)
    assert sorted(p.as_posix() for p in tmp_path.rglob("*")) == before


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_existing_state_is_set_aside_only_with_force_and_never_deleted(tmp_path: Path) -> None:
    config = make_pi(tmp_path)
    built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    archive = tmp_path / "b.tar.gz"
    built.path.rename(archive)
    (config.private_dir / "newer-state.json").write_text("{}")
    with pytest.raises(restore.RestoreError, match=r"already holds state .* pass --force"):
        restore.restore(archive, config.file, say=lambda _: None)
    assert (config.private_dir / "newer-state.json").exists()
    restore.restore(archive, config.file, force=True, say=lambda _: None, now=T0)
    aside = config.pi.state_dir / "private.before-restore-20270115T080000Z"
    assert (aside / "newer-state.json").exists()
    assert not (config.private_dir / "newer-state.json").exists()
    assert (config.private_dir / "control-baseline.json").exists()


def test_an_existing_config_is_kept_and_the_archived_one_written_beside_it(tmp_path: Path) -> None:
    config = make_pi(tmp_path)
    built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    archive = tmp_path / "b.tar.gz"
    built.path.rename(archive)
    original = config.file.read_text()
    config.file.write_text(original + "\n# edited after the backup\n")
    shutil.rmtree(config.private_dir)
    said: list[str] = []
    restore.restore(archive, config.file, say=said.append)
    assert config.file.read_text().endswith("# edited after the backup\n")
    assert (tmp_path / "pi.toml.from-backup").read_text() == original
    assert any("kept" in line and "from-backup" in line for line in said)


def test_a_restore_refuses_while_the_api_daemon_runs(tmp_path: Path) -> None:
    config = make_pi(tmp_path)
    built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    archive = tmp_path / "b.tar.gz"
    built.path.rename(archive)
    host, port = config.api.listen
    with socket.create_server((host, port)), \
            pytest.raises(restore.RestoreError, match="stop the daemons first"):
        restore.restore(archive, config.file, force=True, say=lambda _: None)
    assert (config.private_dir / "control-baseline.json").exists()


# -- the host's store -----------------------------------------------------------------------

def test_the_host_store_commits_whole_prunes_old_and_cleans_up_after_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    names = []
    for i in range(4):
        data = os.urandom(1000 + i)
        upload = store.Upload(folder)
        upload.write([data[:500], data[500:]])
        stored, removed = upload.commit(hashlib.sha256(data).hexdigest(), keep=2, now=T0 + i)
        upload.discard()
        names.append(stored.name)
        assert (folder / stored.name).read_bytes() == data
        assert removed == (names[:i - 1][-1:] if i >= 2 else [])
    assert [s.name for s in store.listing(folder)] == names[-2:]
    # sha256sum -c understands the hash files
    listed = store.listing(folder)[-1]
    assert (folder / f"{listed.name}.sha256").read_text() == f"{listed.sha256}  {listed.name}\n"

    bad = store.Upload(folder)
    bad.write([b"not what was signed"])
    with pytest.raises(store.ContentMismatch):
        bad.commit("0" * 64, keep=2, now=T0 + 9)
    bad.discard()
    left = store.Upload(folder)  # a kill -9 mid-upload leaves this
    left.write([b"partial"])
    assert [s.name for s in store.listing(folder)] == names[-2:]
    assert store.clean_temp(folder) == [left.path.name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*names[-2:], *(f"{n}.sha256" for n in names[-2:])])


# -- when a backup is due (pure) --------------------------------------------------------------

CFG = BackupConfig(every_h=24, after_online_s=60)


def online(since: float) -> sm.HostStatus:
    return sm.HostStatus(state=sm.HostState.ONLINE, since=since)


@pytest.mark.parametrize(("host", "outcome", "now", "expected"), [
    (sm.HostStatus(state=sm.HostState.OFFLINE, since=T0), Outcome(), T0 + 9999, math.inf),
    (online(T0), Outcome(), T0, 60.0),  # let the host settle first
    (online(T0), Outcome(), T0 + 61, 0.0),  # never backed up: now
    (online(T0), Outcome(last_ok={"ts": T0 - 3600}), T0 + 61, 23 * 3600 - 61),
    (online(T0), Outcome(last_ok={"ts": T0 - 86400}), T0 + 61, 0.0),
    # failures: 5 min, 10 min, … at most an hour
    (online(T0), Outcome(failures=1, last_try=T0 + 60), T0 + 61, 299.0),
    (online(T0), Outcome(failures=3, last_try=T0 + 60), T0 + 61, 1199.0),
    (online(T0), Outcome(failures=9, last_try=T0 + 60), T0 + 61, 3599.0),
])
def test_due_in(host: sm.HostStatus, outcome: Outcome, now: float, expected: float) -> None:
    assert due_in(host, outcome, now, CFG) == pytest.approx(expected)


def test_disabled_never_runs_and_a_bad_state_file_is_refused() -> None:
    assert due_in(online(T0), Outcome(), T0 + 999, BackupConfig(enabled=False)) == math.inf
    for bad in ([], {"last_ok": {"at": "x"}}, {"failures": -1}, {"last_try": "soon"}):
        with pytest.raises(ValueError, match="expected"):
            Outcome.from_json(bad)
    back = Outcome.from_json(json.loads(json.dumps(Outcome(
        last_ok={"ts": T0}, failures=2, last_try=T0).to_json())))
    assert back == Outcome(last_ok={"ts": T0}, failures=2, last_try=T0)


def test_gzip_level_keeps_a_history_small(tmp_path: Path) -> None:
    """A power history compresses well: the archive is a fraction of the database."""
    config = make_pi(tmp_path)
    live_history(config).close()
    built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    db_size = (config.private_dir / "power.sqlite3").stat().st_size
    assert built.bytes < db_size
    with gzip.open(built.path) as f:
        assert f.read(1)  # a real gzip stream


# -- the service: what a kill -9 left, a host that is down ------------------------------------

async def test_the_service_clears_what_a_kill_left_and_records_a_failure(tmp_path: Path) -> None:
    config = make_pi(tmp_path)  # host.url is 127.0.0.1:9: nothing listens there
    work = bundle.work_dir(config)
    work.mkdir()
    (work / "backup.tar.gz").write_bytes(b"half an archive from before a kill -9")
    status = sm.HostStatus(state=sm.HostState.OFFLINE, since=T0)
    service = BackupService(config, BackupConfig(after_online_s=0), b"k" * 32, lambda: status)
    task = asyncio.create_task(service.run())
    for _ in range(200):
        if not work.exists():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert not work.exists()
    assert service.status()["next_due"] is None  # not while the host is asleep

    assert await service.attempt() is False
    saved = json.loads((config.private_dir / STATE_FILE).read_text())
    assert saved["failures"] == 1
    assert "127.0.0.1:9" in saved["last_error"]["message"]
    assert not work.exists()  # no archive left on the card after a failed send
    again = BackupService(config, BackupConfig(after_online_s=0), b"k" * 32, lambda: status)
    assert again.outcome.failures == 1  # a restart remembers: no retry storm
    assert again.status()["last_error"]["message"] == saved["last_error"]["message"]


def test_a_work_dir_elsewhere_keeps_the_build_off_private(tmp_path: Path) -> None:
    path = pi_toml(tmp_path, extra=f'[backup]\nwork_dir = "{tmp_path / "run"}"\n')
    config = pi_config.load(path)
    (config.private_dir).mkdir(parents=True)
    (config.private_dir / "x.json").write_text("{}")
    built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    assert built.path.parent == tmp_path / "run" / "edgepair-backup"
    assert not (config.private_dir / bundle.WORK_DIR).exists()
    assert [m.name for m in built.manifest.members] == ["config/pi.toml", "private/x.json"]
    bundle.clear(config)
    assert not built.path.parent.exists()
    # relative paths are relative to the config file, like every path in it
    relative = pi_config.load(pi_toml(tmp_path, extra='[backup]\nwork_dir = "run/here"\n'))
    assert bundle.work_dir(relative) == tmp_path / "run" / "here" / "edgepair-backup"
    with pytest.raises(ConfigError, match=r"backup\.work_dir: expected a path"):
        pi_config.load(pi_toml(tmp_path, extra="[backup]\nwork_dir = 5\n"))


def test_a_json_file_caught_mid_write_is_read_again(tmp_path: Path) -> None:
    """tinydb rewrites its file in place: a backup must not keep a torn registry."""
    config = make_pi(tmp_path)
    registry = config.private_dir / "nodes-registry.json"
    whole = b'{"nodes": {"1": {"hwid": "ab12", "name": "blinds"}}}'
    registry.write_bytes(whole[:20])  # the writer is halfway

    def finish() -> None:
        time.sleep(0.08)
        registry.write_bytes(whole)

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        built = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    finally:
        writer.join()
    with tarfile.open(built.path) as tar:
        member = tar.extractfile("private/nodes-registry.json")
        assert member is not None
        assert member.read() == whole
    assert built.skipped == ()
    registry.write_bytes(b"{broken for good")
    again = bundle.build(config, include_secrets=False, now=T0, hostname="pi")
    assert again.skipped == ("private/nodes-registry.json: not valid JSON after 5 reads "
                             "(backed up as it is)",)
