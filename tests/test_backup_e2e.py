"""The Pi's backup through the real daemons on loopback: the host coming online gets a
backup, a wiped Pi is rebuilt from it by ``edgepair pi restore``, and an upload cut short
by kill -9 on either side leaves the previous good backup in place."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handshake.backupwire import PATH
from handshake.client import HandshakeClient
from handshake.errors import RequestError
from host.backup import store
from tests.e2e import ROOT, Site, stop, wait_http, wait_state
from tests.helpers import KEY, KEY_HEX

BASELINE = b'{"profile": "sim-inverter", "taken_at": "2026-12-01T10:00:00Z", "registers": {"142": 0}}'


async def until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def backups(site: Site) -> list[Path]:
    return sorted((site.root / "host-state" / "backups").glob("edgepair-pi-*.tar.gz"))


def pi_json(site: Site) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((site.root / "pi-state/public/pi.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


async def test_a_backup_reaches_the_host_and_rebuilds_a_wiped_pi(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2, extra_pi="[backup]\nafter_online_s = 1\nkeep = 2\n"
                "[usage]\ncommit_interval_s = 0.1\npublish_interval_s = 0.2\n")
    private = tmp_path / "pi-state" / "private"
    private.mkdir(parents=True)
    (private / "control-baseline.json").write_bytes(BASELINE)
    pi, host = site.start_pi(), site.start_host()
    try:
        await wait_http(site.api + "/api/v1/health")
        await wait_state(site.api, "online", timeout=15)
        archive = (await until(lambda: backups(site), what="a backup on the host"))[0]
        doc = await until(lambda: (pi_json(site).get("backup") or {}).get("last_ok") and pi_json(site),
                          what="pi.json's last good backup")
    finally:
        assert stop(pi) == 0
        assert stop(host) == 0
    ok = doc["backup"]["last_ok"]
    data = archive.read_bytes()
    assert ok["sha256"] == hashlib.sha256(data).hexdigest()
    assert ok["name"] == archive.name
    assert (archive.parent / f"{archive.name}.sha256").read_text().split()[0] == ok["sha256"]
    assert doc["backup"]["next_due"] is not None  # a day later, while the host is up
    assert not (private / ".backup-tmp").exists()  # the work folder is gone after the upload
    # What the archive holds of the usage ledger (the live one went on after the backup).
    with tarfile.open(archive) as tar:
        member = tar.extractfile("private/usage.sqlite3")
        assert member is not None
        (tmp_path / "archived.sqlite3").write_bytes(member.read())
    usage = dump(tmp_path / "archived.sqlite3")
    assert any(line.startswith('INSERT INTO "intervals"') for line in usage)
    live = dump(private / "usage.sqlite3")
    assert usage[:3] == live[:3]  # the same schema, the same first interval

    # The SD card dies: nothing of the Pi's state is left.
    subprocess.run(["rm", "-rf", str(tmp_path / "pi-state")], check=True)
    restored = subprocess.run(
        [sys.executable, "-m", "handshake", "pi", "restore", str(archive),
         "--config", str(site.pi_config)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    assert restored.returncode == 0, restored.stderr
    assert "a good backup of" in restored.stdout
    assert (private / "control-baseline.json").read_bytes() == BASELINE
    assert dump(private / "usage.sqlite3") == usage
    assert (private / "host-state.json").exists()
    # a backup cannot hold its own outcome: the restored Pi sends a fresh one once the host
    # is online again, which is what a rebuilt card should do
    assert not (private / "backup-state.json").exists()

    # restoring again over the restored state needs --force, and sets it aside
    again = subprocess.run(
        [sys.executable, "-m", "handshake", "pi", "restore", str(archive),
         "--config", str(site.pi_config)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    assert again.returncode == 1
    assert "pass --force" in again.stderr
    assert "Traceback" not in again.stderr


SLOW_UPLOAD = """
import asyncio, sys
from handshake.client import HandshakeClient

async def body(total):
    sent = 0
    while sent < total:
        piece = b"x" * min(65536, total - sent)
        sent += len(piece)
        yield piece
        await asyncio.sleep(0.05)

async def main(url, key, total):
    async with HandshakeClient(url, bytes.fromhex(key)) as client:
        await client.stream("PUT", "/api/v1/backup?keep=3", body(total),
                            content_sha256="ab" * 32, content_length=total)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def _good_upload(site: Site, data: bytes) -> dict[str, Any]:
    async with HandshakeClient(site.host_url, KEY) as client:
        answer: dict[str, Any] = await client.stream(
            "PUT", f"{PATH}?keep=3", data, content_sha256=hashlib.sha256(data).hexdigest(),
            content_length=len(data))
    return answer


def _temps(site: Site) -> list[Path]:
    return list((site.root / "host-state" / "backups").glob(".tmp-*"))


async def test_an_upload_cut_short_on_either_side_leaves_the_good_backup(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2)
    host = site.start_host()
    try:
        await wait_http(site.host_url + "/api/v1/health")
        good = os.urandom(200_000)
        first = await _good_upload(site, good)
        assert first["bytes"] == len(good)

        # The Pi killed -9 mid-upload: the host drops the partial file.
        pi_side = subprocess.Popen([sys.executable, "-c", SLOW_UPLOAD, site.host_url, KEY_HEX,
                                    str(20 * 1024 * 1024)], cwd=ROOT)
        await until(lambda: _temps(site), what="the upload's temp file")
        pi_side.send_signal(signal.SIGKILL)
        pi_side.wait(10)
        await until(lambda: not _temps(site), what="the partial upload removed")
        assert [p.name for p in backups(site)] == [first["name"]]
        assert backups(site)[0].read_bytes() == good

        # The host killed -9 mid-upload: the next start removes what was left.
        pi_side = subprocess.Popen([sys.executable, "-c", SLOW_UPLOAD, site.host_url, KEY_HEX,
                                    str(20 * 1024 * 1024)], cwd=ROOT,
                                   stderr=subprocess.DEVNULL)
        await until(lambda: _temps(site), what="the upload's temp file")
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        pi_side.wait(30)
        assert _temps(site), "kill -9 left the partial file (the start must clean it)"
        host = site.start_host()
        await wait_http(site.host_url + "/api/v1/health")
        await until(lambda: not _temps(site), what="the start cleans the partial upload")
        async with HandshakeClient(site.host_url, KEY) as client:
            listed = await client.request("GET", PATH)
        assert [b["name"] for b in listed["backups"]] == [first["name"]]
        assert listed["backups"][0]["sha256"] == hashlib.sha256(good).hexdigest()
    finally:
        stop(host)
    assert "Traceback" not in (tmp_path / "host.log").read_text()


async def test_bad_uploads_get_a_precise_error_and_store_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2)
    site.host_config.write_text(site.host_config.read_text() + "[backup]\nmax_bytes = 100000\n")
    host = site.start_host()
    try:
        await wait_http(site.host_url + "/api/v1/health")
        data = b"a backup " * 10
        sha = hashlib.sha256(data).hexdigest()
        async with aiohttp.ClientSession() as session, session.put(
                site.host_url + PATH + "?keep=3", data=data,
                headers={"X-Content-SHA256": sha}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
        async with HandshakeClient(site.host_url, KEY) as client:
            for path, body, content_sha, status, words in [
                (f"{PATH}?keep=0", data, sha, 400, "keep: expected an integer 1…100, got '0'"),
                (PATH, data, sha, 400, "keep: expected an integer"),
                (f"{PATH}?keep=3", b"", hashlib.sha256(b"").hexdigest(), 400,
                 "a 0-byte body is not a backup archive"),
                (f"{PATH}?keep=3", data, "0" * 64, 422, "the signed one"),
                (f"{PATH}?keep=3", b"x" * 100_001, hashlib.sha256(b"x" * 100_001).hexdigest(),
                 413, "[backup] max_bytes (100000)"),
            ]:
                with pytest.raises(RequestError) as refused:
                    await client.stream("PUT", path, body, content_sha256=content_sha,
                                        content_length=len(body))
                assert refused.value.status == status, (path, refused.value)
                assert words in str(refused.value), (words, str(refused.value))
        assert backups(site) == []
        assert _temps(site) == []
    finally:
        assert stop(host) == 0


def test_host_backups_lists_and_verifies_what_the_host_keeps(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2)
    folder = tmp_path / "host-state" / "backups"
    for i, data in enumerate((b"first backup " * 20, b"second backup " * 20)):
        upload = store.Upload(folder)
        upload.write([data])
        upload.commit(hashlib.sha256(data).hexdigest(), keep=5, now=1_800_000_000.0 + i)
        upload.discard()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "handshake", "host", "backups", *args,
                               "--config", str(site.host_config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30, check=False)

    listed = cli("--verify", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["backups"]
    assert [r["verified"] for r in rows] == [True, True]
    assert rows[0]["name"] == "edgepair-pi-20270115T080000Z.tar.gz"
    damaged = folder / rows[1]["name"]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"X")  # bit rot on the NAS
    checked = cli("--verify")
    assert checked.returncode == 1
    assert "DAMAGED" in checked.stdout
    assert f"{rows[0]['name']}" in checked.stdout
