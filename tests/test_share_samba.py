"""The standalone share as it ships: scripts/samba/share.sh writes [share] into a scratch
smb.conf, a real smbd on loopback serves it, a real smbclient (a Samba user with a
password, not a guest) stores and reads a file, and the Pi's api daemon reports the
folder's free space in pi.json beside the inbox's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pi.pistats import collect
from tests.e2e import Site, stop, wait_http
from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
SMB_START_S = 15.0
USER, PASSWORD = "root", "edgepair-test-pw"


def install_share(tmp_path: Path, conf: Path, share_dir: Path) -> subprocess.CompletedProcess[str]:
    script = (f"set -euo pipefail; source {REPO}/scripts/lib/install.sh; "
              f"source {REPO}/scripts/samba/share.sh; systemd_running() {{ false; }}; "
              f"samba_standalone '{share_dir}'; samba_standalone '{share_dir}'")
    env = {**os.environ, "EDGEPAIR_SAMBA_CONF": str(conf),
           "EDGEPAIR_SAMBA_STANDALONE": str(tmp_path / "edgepair-share.conf")}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.fixture
def smbd(tmp_path: Path) -> tuple[Path, Path, int]:
    for tool in ("smbd", "smbclient", "smbpasswd", "testparm"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install -y samba smbclient"
    root = tmp_path / "samba"
    for name in ("lock", "state", "cache", "pid", "private"):
        (root / name).mkdir(parents=True)
    port = free_port()
    conf = root / "smb.conf"
    conf.write_text(f"""[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  lock directory = {root}/lock
  state directory = {root}/state
  cache directory = {root}/cache
  pid directory = {root}/pid
  private dir = {root}/private
  log file = {root}/log.smbd
  load printers = no
  disable spoolss = yes
""")
    share_dir = tmp_path / "smb-share"
    share_dir.mkdir()
    return conf, share_dir, port


def test_the_shipped_share_installs_once_and_a_samba_user_stores_and_reads_a_file(
        tmp_path: Path, smbd: tuple[Path, Path, int]) -> None:
    conf, share_dir, port = smbd
    run = install_share(tmp_path, conf, share_dir)
    assert run.returncode == 0, run.stderr
    assert "edgepair-share.conf: up to date" in run.stdout, "the second run changes nothing"
    assert conf.read_text().count("include = ") == 1
    parsed = subprocess.run(["testparm", "-s", str(conf)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert parsed.returncode == 0, parsed.stderr
    assert "Unknown parameter" not in parsed.stderr
    assert "[share]" in parsed.stdout
    assert f"path = {share_dir}" in parsed.stdout
    assert "guest ok" not in parsed.stdout  # not an open share unless the user says so

    subprocess.run(["smbpasswd", "-c", str(conf), "-a", "-s", USER],
                   input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True, timeout=30,
                   capture_output=True)
    proc = subprocess.Popen(["smbd", "--foreground", "--no-process-group", "--debug-stdout",
                             "-s", str(conf)], stdout=(tmp_path / "smbd.out").open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SMB_START_S
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (tmp_path / "smbd.out").read_text()
            assert time.monotonic() < deadline, (tmp_path / "smbd.out").read_text()
            time.sleep(0.05)
        source = tmp_path / "upload"
        source.mkdir()
        data = os.urandom(300_000)
        (source / "scan.pdf").write_bytes(data)

        def client(command: str, user: str = f"{USER}%{PASSWORD}") -> subprocess.CompletedProcess[str]:
            return subprocess.run(["smbclient", "//127.0.0.1/share", "-p", str(port), "-U", user,
                                   "-s", str(conf), "-c", command], cwd=source,
                                  capture_output=True, text=True, timeout=30, check=False)

        put = client("mkdir scans; put scan.pdf scans/scan.pdf")
        assert put.returncode == 0, put.stdout + put.stderr
        stored = share_dir / "scans" / "scan.pdf"
        assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert stored.stat().st_gid == 100  # force group = users
        assert (share_dir / "scans").stat().st_mode & 0o2000  # setgid folders
        (source / "scan.pdf").unlink()
        got = client("get scans/scan.pdf back.pdf")
        assert got.returncode == 0, got.stdout + got.stderr
        assert (source / "back.pdf").read_bytes() == data
        # nothing moves files out of this share: still there
        assert stored.exists()
        wrong = client("ls", user=f"{USER}%not-the-password")
        assert wrong.returncode != 0
        assert "NT_STATUS_LOGON_FAILURE" in wrong.stdout + wrong.stderr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_share_dir_must_be_a_plain_path(tmp_path: Path, smbd: tuple[Path, Path, int]) -> None:
    conf, _, _ = smbd
    run = install_share(tmp_path, conf, Path("/smb/my share"))
    assert run.returncode != 0
    assert "use letters, digits" in run.stderr + run.stdout
    assert not (tmp_path / "edgepair-share.conf").exists()


def test_pi_json_shows_the_free_space_of_the_inbox_and_the_share(tmp_path: Path) -> None:
    share, inbox = tmp_path / "share", tmp_path / "inbox"
    share.mkdir()
    inbox.mkdir()
    doc = collect(tmp_path, ("api",), 30.0, shares={"inbox": inbox, "share": share,
                                                     "gone": tmp_path / "missing"})
    usage = shutil.disk_usage(share)
    assert doc.shares["share"]["path"] == str(share)
    assert doc.shares["share"]["total_bytes"] == usage.total
    assert abs(doc.shares["share"]["free_bytes"] - usage.free) < 64 * 1024 * 1024
    assert doc.shares["inbox"]["total_bytes"] == usage.total
    assert doc.shares["gone"] == {"path": str(tmp_path / "missing"), "error": "not found"}


async def test_the_api_daemon_publishes_the_configured_shares(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    site = Site(tmp_path, interval=0.2, extra_pi=f'[share]\ndir = "{share}"\n')
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        path = tmp_path / "pi-state/public/pi.json"
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, "pi.json never written"
            await asyncio.sleep(0.05)
        doc = json.loads(path.read_text())
        assert set(doc["shares"]) == {"share"}
        assert doc["shares"]["share"]["free_bytes"] > 0
    finally:
        assert stop(pi) == 0
