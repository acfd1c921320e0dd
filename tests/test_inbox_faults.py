"""Fault test: kill -9 the inbox daemon and the host agent at random moments during flushes.

Both run as real processes (``edgepair pi run inbox``, ``edgepair host run``). Each seeded
round drops 3-7 files (1 KB - 2 MB, some in folders), waits until a random number of
them has gone (plus a random few ms), SIGKILLs the daemon, the agent or both and restarts
them. After every round, and at the end when
everything has drained: each file is on the host exactly once with the right hash or
still whole on the Pi — never lost, never truncated, never duplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

from handshake import documents
from handshake.documents import HostDocument
from handshake.util.timeutil import iso
from host.inbox.names import TEMP_DIR
from pi.inbox import upload
from tests.e2e import spawn
from tests.fakes.inbox_site import until
from tests.helpers import free_port, pi_toml, write_secrets

ROUNDS = 20
SEED = 20261123
START_TIMEOUT_S = 20.0


class Site:
    """Config files for one inbox daemon and one host agent, on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pi_inbox = root / "pi-inbox"
        self.host_inbox = root / "host-inbox"
        self.public = root / "state" / "public"
        self.host_port = free_port()
        self.pi_config = pi_toml(root, host_url=f"http://127.0.0.1:{self.host_port}", extra=f"""
[inbox]
dir = "{self.pi_inbox}"
settle_s = 0.05
rescan_s = 1
parallel = 2
""")
        secrets = write_secrets(root / "secrets.toml")
        self.host_config = root / "host.toml"
        self.host_config.write_text(f"""
[host]
listen = "127.0.0.1:{self.host_port}"
state_dir = "{root / 'host-state'}"
secrets_file = "{secrets}"
[pi]
url = "http://127.0.0.1:9"
[inbox]
dir = "{self.host_inbox}"
min_free_bytes = 0
""")
        self.pi_inbox.mkdir()
        self.host_state("online")
        self.pi: subprocess.Popen[bytes] | None = None
        self.host: subprocess.Popen[bytes] | None = None

    def host_state(self, state: str) -> None:
        """What the api daemon would publish as it sees the host die and come back."""
        documents.publish(self.public / "host.json",
                          HostDocument(generated_at=iso(time.time()) or "", state=state))

    async def start_pi(self) -> None:
        marker = self.public / "inbox.json"
        before = marker.stat().st_mtime_ns if marker.exists() else 0
        self.pi = spawn("--log-level", "WARNING", "pi", "run", "inbox", "--config",
                        str(self.pi_config), log=self.root / "pi.log")
        await until(lambda: marker.exists() and marker.stat().st_mtime_ns != before,
                    START_TIMEOUT_S, "the inbox daemon to start")

    async def start_host(self) -> None:
        self.host = spawn("host", "run", "--config", str(self.host_config),
                          log=self.root / "host.log")
        await until(lambda: _listening(self.host_port), START_TIMEOUT_S, "the host agent")
        self.host_state("online")

    def kill(self, which: str) -> None:
        proc = self.pi if which == "pi" else self.host
        assert proc is not None
        assert proc.poll() is None, f"the {which} process died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if which == "host":
            self.host_state("unreachable")

    def stop(self) -> None:
        for proc in (self.pi, self.host):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


_HASHES: dict[tuple[str, int, int, int], str] = {}


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file below ``root`` (not the temp folder), memoized by stat."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != TEMP_DIR]
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
                key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
                if key not in _HASHES:
                    with open(path, "rb") as f:
                        _HASHES[key] = hashlib.file_digest(f, "sha256").hexdigest()
            except FileNotFoundError:
                continue  # deleted by the daemon between listing and reading
            out[os.path.relpath(path, root)] = _HASHES[key]
    return out


def _as_dropped(rel: str) -> str:
    """A file killed between being renamed aside and removed is still whole on the Pi,
    and the next start puts it back under its name (upload.restore_aside)."""
    folder, _, name = rel.rpartition("/")
    if not name.startswith(upload.SENT_PREFIX):
        return rel
    name = name[len(upload.SENT_PREFIX):].partition("-")[2]
    return f"{folder}/{name}" if folder else name


def check(site: Site, expected: dict[str, str]) -> tuple[int, int]:
    """The invariant; returns (files still on the Pi, files on the host).

    The Pi is read before the host: a file gone from the Pi was stored by the host before
    the Pi deleted it, so it must show up in the host read that follows.
    """
    on_pi = {_as_dropped(rel): digest for rel, digest in hashes(site.pi_inbox).items()}
    on_host = hashes(site.host_inbox)
    known = {digest: rel for rel, digest in expected.items()}
    unknown = [rel for rel, digest in on_host.items() if digest not in known]
    assert not unknown, f"truncated or foreign files on the host: {unknown}"
    twice = [known[h] for h, n in Counter(on_host.values()).items() if n > 1]
    assert not twice, f"duplicated on the host: {twice}"
    for rel, digest in on_pi.items():
        assert expected.get(rel) == digest, f"{rel} on the Pi is not what was dropped"
    host_hashes = set(on_host.values())
    for rel, digest in expected.items():
        assert on_pi.get(rel) == digest or digest in host_hashes, \
            f"{rel} is lost: neither on the Pi nor on the host"
    return len(on_pi), len(on_host)


async def test_kill_9_during_flushes_loses_truncates_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    site = Site(tmp_path)
    expected: dict[str, str] = {}  # relative path → SHA-256
    mid_flush = 0
    try:
        await asyncio.gather(site.start_host(), site.start_pi())
        for n in range(ROUNDS):
            dropped = []
            for i in range(rng.randint(3, 7)):
                rel = f"r{n}/f{i}.bin" if rng.random() < 0.5 else f"r{n}-f{i}.bin"
                data = rng.randbytes(rng.choice((1024, 50_000, 300_000, 1_000_000, 2_000_000)))
                path = site.pi_inbox / rel
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(data)
                expected[rel] = hashlib.sha256(data).hexdigest()
                dropped.append(path)
            # A random moment of this round's flush: after k of its files have gone.
            gone = rng.randint(0, len(dropped) - 2)
            await until(lambda d=dropped, k=gone: sum(not p.exists() for p in d) >= k,  # type: ignore[misc]
                        timeout=10, what=f"round {n}: {gone} files sent", every=0.001)
            await asyncio.sleep(rng.uniform(0, 0.01))
            victims = rng.choice((["pi"], ["host"], ["pi", "host"], ["pi", "host"]))
            mid_flush += any(p.exists() for p in dropped)
            for victim in victims:
                site.kill(victim)
            check(site, expected)
            await asyncio.sleep(rng.uniform(0, 0.05))
            await asyncio.gather(*(site.start_pi() if v == "pi" else site.start_host()
                                   for v in victims))
        await until(lambda: check(site, expected) == (0, len(expected)), timeout=30,
                    what="every file on the host, none left on the Pi")
    finally:
        site.stop()
    assert mid_flush >= ROUNDS * 3 // 4, f"only {mid_flush} kills landed during a flush"
    assert os.listdir(site.host_inbox / TEMP_DIR) == [], "uploads left half-written"
