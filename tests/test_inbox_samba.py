"""End to end: files dropped over SMB (real smbd, real smbclient) arrive on the host once.

Debian's ``smbd`` serves the Pi's inbox on 127.0.0.1 (a free high port, a private config);
``smbclient`` drops files into it: small ones, one in a new folder, a large one written
slowly (smbclient reads it from a FIFO fed in 16 MiB steps with pauses longer than
settle_s, so the file sits open and unchanged for a while) and one overwritten while it
settles. The real inbox daemon forwards them to the real host agent. A watcher on the
host's inbox hashes every file the moment it appears at a final name: nothing partial,
no first draft, no second copy may ever show up there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from host import agent
from host.inbox.names import TEMP_DIR
from tests.fakes.inbox_site import (
    host_config,
    inbox_json,
    pi_config_with_inbox,
    running_inbox,
    set_host_state,
    sha256,
    tree,
    until,
)
from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
SETTLE_S = 0.5
SMB_START_S = 15.0
CHUNK = 16 * 1024 * 1024  # smbclient reads its source in 16 MiB pieces
PAUSE_S = 1.0  # longer than SETTLE_S: only "closed" tells that the file is finished


class Smb:
    """A private smbd on ``address`` sharing ``share`` as //ADDRESS/inbox."""

    def __init__(self, root: Path, share: Path, address: str = "127.0.0.1") -> None:
        self.root = root
        self.address = address
        self.port = free_port()
        for name in ("lock", "state", "cache", "pid", "private"):
            (root / name).mkdir(parents=True)
        self.conf = root / "smb.conf"
        self.conf.write_text(f"""
[global]
  server role = standalone server
  interfaces = {address}
  bind interfaces only = yes
  smb ports = {self.port}
  disable netbios = yes
  lock directory = {root}/lock
  state directory = {root}/state
  cache directory = {root}/cache
  pid directory = {root}/pid
  private dir = {root}/private
  log file = {root}/log.smbd
  map to guest = Bad User
  load printers = no
  disable spoolss = yes
[inbox]
  path = {share}
  read only = no
  guest ok = yes
  force user = root
""")
        self.proc = subprocess.Popen(
            ["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s", str(self.conf)],
            stdout=(root / "smbd.out").open("wb"), stderr=subprocess.STDOUT,
            # Its own process group: smbd signals its whole group when it stops.
            start_new_session=True)
        deadline = time.monotonic() + SMB_START_S
        while True:
            with socket.socket() as s:
                if s.connect_ex((address, self.port)) == 0:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"smbd did not start: {(root / 'smbd.out').read_text()}")
            time.sleep(0.05)

    async def client(self, *commands: str, source_dir: Path) -> str:
        """Run ``smbclient -c "CMD; CMD"`` against the share; its output."""
        proc = await asyncio.create_subprocess_exec(
            "smbclient", f"//{self.address}/inbox", "-p", str(self.port), "-N", "-s", str(self.conf),
            "-c", "; ".join(commands), cwd=source_dir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode(errors="replace")
        return out.decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Appearances(FileSystemEventHandler):
    """Hashes every file at the moment it appears at a final name in the host's inbox."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("created", "moved", "closed"):
            return
        path = Path(os.fsdecode(event.dest_path or event.src_path))
        rel = path.relative_to(self.root).as_posix()
        if rel.startswith(TEMP_DIR):
            return
        try:
            digest = sha256(path.read_bytes())
        except FileNotFoundError:
            return
        with self._lock:
            self.seen.append((rel, digest))


@pytest.fixture
def host_watch(tmp_path: Path) -> Iterator[Appearances]:
    root = tmp_path / "host-inbox"
    root.mkdir()
    handler = Appearances(root)
    observer = Observer(timeout=0.1)
    observer.schedule(handler, str(root), recursive=True)
    observer.start()
    try:
        yield handler
    finally:
        observer.stop()
        observer.join()


@pytest.fixture
def smb(tmp_path: Path) -> Iterator[Smb]:
    for tool in ("smbd", "smbclient"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install -y samba smbclient"
    share = tmp_path / "pi-inbox"
    share.mkdir()
    server = Smb(tmp_path / "samba", share)
    try:
        yield server
    finally:
        server.stop()


def feed_slowly(fifo: Path, chunks: list[bytes]) -> None:
    """Write ``chunks`` into the FIFO with pauses: smbclient passes each on when it is whole."""
    with fifo.open("wb") as f:
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(PAUSE_S)
            f.write(chunk)
            f.flush()


async def test_files_dropped_over_smb_arrive_on_the_host_once_and_whole(
        tmp_path: Path, aiohttp_server: Any, smb: Smb, host_watch: Appearances) -> None:
    server = await aiohttp_server(agent.build_app(host_config(tmp_path), boot_id="b"))
    config = pi_config_with_inbox(tmp_path, f"http://127.0.0.1:{server.port}", settle_s=SETTLE_S)
    set_host_state(config, "online")
    src = tmp_path / "client"
    src.mkdir()
    small = {"note.txt": b"hello from SMB", "photos/été 2026.jpg": os.urandom(200_000)}
    (src / "note.txt").write_bytes(small["note.txt"])
    (src / "photo.jpg").write_bytes(small["photos/été 2026.jpg"])
    chunks = [os.urandom(CHUNK), os.urandom(CHUNK), os.urandom(CHUNK // 4)]
    os.mkfifo(src / "slow.fifo")
    (src / "draft-1.txt").write_bytes(b"first draft " * 1000)
    (src / "draft-2.txt").write_bytes(b"final text")

    feeder = asyncio.create_task(asyncio.to_thread(feed_slowly, src / "slow.fifo", chunks))
    slow_put = asyncio.create_task(smb.client("put slow.fifo big.bin", source_dir=src))
    try:
        await drop_and_forward(tmp_path, config, smb, src, feeder, slow_put)
    finally:
        await asyncio.gather(feeder, slow_put, return_exceptions=True)
    expected = {**small, "report.txt": b"final text", "big.bin": b"".join(chunks)}
    host_files = {k: v for k, v in tree(tmp_path / "host-inbox").items()
                  if not k.startswith(TEMP_DIR)}
    assert host_files == expected, "exactly the final files, once each, nothing else"
    good = {(rel, sha256(data)) for rel, data in expected.items()}
    assert host_watch.seen, "the watcher saw the files arrive"
    assert set(host_watch.seen) <= good, f"partial or stale content appeared: {host_watch.seen}"
    assert sha256(b"first draft " * 1000) not in {d for _, d in host_watch.seen}


async def drop_and_forward(tmp_path: Path, config: Any, smb: Smb, src: Path,
                           feeder: asyncio.Task[None], slow_put: asyncio.Task[str]) -> None:
    async with running_inbox(config):
        await smb.client("put note.txt note.txt", "mkdir photos",
                         'put photo.jpg "photos/été 2026.jpg"', source_dir=src)
        await smb.client("put draft-1.txt report.txt", source_dir=src)
        await asyncio.sleep(SETTLE_S / 3)  # overwritten while it settles
        await smb.client("put draft-2.txt report.txt", source_dir=src)
        # Mid-way through the slow file: the Pi has part of it, the host none.
        await until(lambda: (tmp_path / "pi-inbox" / "big.bin").exists()
                    and (tmp_path / "pi-inbox" / "big.bin").stat().st_size >= CHUNK)
        await asyncio.sleep(SETTLE_S * 1.5)
        assert "big.bin" not in tree(tmp_path / "host-inbox"), "an open file was sent"
        await feeder
        await slow_put
        await until(lambda: tree(tmp_path / "pi-inbox") == {}, timeout=20,
                    what="every file gone from the share")
        await until(lambda: inbox_json(config)["pending"]["files"] == 0)


def test_the_shipped_share_installs_once_and_samba_accepts_it(tmp_path: Path) -> None:
    """scripts/samba/share.sh (the install-pi step) on a scratch smb.conf, run twice."""
    conf = tmp_path / "smb.conf"
    conf.write_text("[global]\n  server role = standalone server\n")
    share = tmp_path / "edgepair-inbox.conf"
    script = (f"set -euo pipefail; source {REPO}/scripts/lib/install.sh; "
              f"source {REPO}/scripts/samba/share.sh; systemd_running() {{ false; }}; "
              "samba_share /srv/edgepair/inbox; samba_share /srv/edgepair/inbox")
    env = {**os.environ, "EDGEPAIR_SAMBA_CONF": str(conf), "EDGEPAIR_SAMBA_SHARE": str(share)}
    run = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    assert f"{share}: up to date" in run.stdout, "the second run changes nothing"
    assert conf.read_text().count(f"include = {share}") == 1
    parsed = subprocess.run(["testparm", "-s", str(conf)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert parsed.returncode == 0, parsed.stderr
    assert "Unknown parameter" not in parsed.stderr
    assert "[inbox]" in parsed.stdout
    assert "path = /srv/edgepair/inbox" in parsed.stdout
    assert "force user = edgepair" in parsed.stdout
