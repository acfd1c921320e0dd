"""The hostsfile backend: atomic addn-hosts file, SIGHUP to a real process via its pidfile."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pi.config import DnsSection
from pi.config import PiSecrets as Secrets
from pi.dns import DnsUnavailable, make_backend
from pi.dns.hostsfile import HEADER, HostsFileDns

NAME = "nas.home.arpa"

# Stands in for dnsmasq: says "ready", then prints "hup" on each SIGHUP.
DNSMASQ = """
import signal, sys, time
signal.signal(signal.SIGHUP, lambda *_: print("hup", flush=True))
print("ready", flush=True)
time.sleep(30)
"""


@pytest.fixture
async def dnsmasq(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", DNSMASQ,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(5):
            assert await proc.stdout.readline() == b"ready\n"
        pidfile = tmp_path / "dnsmasq.pid"
        pidfile.write_text(f"{proc.pid}\n")
        yield proc, pidfile
    finally:
        proc.kill()
        await proc.wait()


async def test_writes_the_file_and_sighups_dnsmasq(
        tmp_path: Path, dnsmasq: tuple[asyncio.subprocess.Process, Path]) -> None:
    proc, pidfile = dnsmasq
    assert proc.stdout is not None
    hosts = tmp_path / "edgepair" / "failover.hosts"
    comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
    backend = HostsFileDns(NAME, hosts, pidfile, process_names=(comm,))
    await backend.start()
    await backend.set_address("192.168.1.10")
    assert hosts.read_text() == f"{HEADER}192.168.1.10 {NAME}\n"
    assert hosts.stat().st_mode & 0o777 == 0o644  # dnsmasq rereads it as its own user
    async with asyncio.timeout(5):
        assert await proc.stdout.readline() == b"hup\n"
    await backend.set_address("fd00::10")
    assert hosts.read_text().endswith(f"fd00::10 {NAME}\n")
    async with asyncio.timeout(5):
        assert await proc.stdout.readline() == b"hup\n"
    assert await backend.get_address() == "fd00::10"
    assert sorted(p.name for p in hosts.parent.iterdir()) == ["failover.hosts"]  # no temp left
    await backend.close()


async def test_unchanged_address_does_not_rewrite(tmp_path: Path) -> None:
    hosts = tmp_path / "failover.hosts"
    backend = HostsFileDns(NAME, hosts)
    await backend.set_address("192.168.1.10")
    inode = hosts.stat().st_ino
    await backend.set_address("192.168.1.10")
    assert hosts.stat().st_ino == inode  # an atomic rewrite would be a new inode
    await backend.set_address("192.168.1.20")
    assert hosts.stat().st_ino != inode


async def test_missing_pidfile_is_a_warning_once(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    hosts = tmp_path / "failover.hosts"
    backend = HostsFileDns(NAME, hosts, tmp_path / "missing.pid")
    with caplog.at_level(logging.DEBUG, logger="pi.dns.hostsfile"):
        await backend.set_address("192.168.1.10")
        await backend.set_address("192.168.1.20")
    assert hosts.read_text().endswith(f"192.168.1.20 {NAME}\n")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "missing.pid" in warnings[0].getMessage()
    assert "not found" in warnings[0].getMessage()
    assert any(r.levelno == logging.DEBUG and "could not ask dnsmasq" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("content", ["", "garbage\n", "999999999\n"])
async def test_bad_or_stale_pidfile_is_a_warning(tmp_path: Path, content: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    pidfile.write_text(content)
    backend = HostsFileDns(NAME, tmp_path / "failover.hosts", pidfile)
    with caplog.at_level(logging.WARNING):
        await backend.set_address("192.168.1.10")
    assert await backend.get_address() == "192.168.1.10"
    assert "could not ask dnsmasq" in caplog.text


async def test_get_address_parses_a_hand_edited_file(tmp_path: Path) -> None:
    hosts = tmp_path / "failover.hosts"
    backend = HostsFileDns(NAME, hosts)
    assert await backend.get_address() is None  # no file yet
    hosts.write_text("# comment 10.0.0.1 nas.home.arpa\n192.168.1.1 router\n"
                     "192.168.1.10  NAS.home.arpa. nas  # trailing comment\n")
    assert await backend.get_address() == "192.168.1.10"
    hosts.write_text("192.168.1.10 nas.home.arpa\n192.168.1.20 nas.home.arpa\n")
    assert await backend.get_address() is None  # ambiguous: set_address must fix it
    await backend.set_address("192.168.1.10")
    assert await backend.get_address() == "192.168.1.10"
    assert hosts.read_text().count("nas.home.arpa") == 1


async def test_pid_of_another_program_is_not_signalled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # SIGHUP would kill `sleep`: a stale pidfile must not take a bystander down
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        pidfile = tmp_path / "dnsmasq.pid"
        pidfile.write_text(f"{proc.pid}\n")
        backend = HostsFileDns(NAME, tmp_path / "failover.hosts", pidfile)
        with caplog.at_level(logging.WARNING):
            await backend.set_address("192.168.1.10")
        assert "'sleep', not dnsmasq" in caplog.text
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
    finally:
        proc.kill()
        await proc.wait()


async def test_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    backend = HostsFileDns(NAME, blocker / "failover.hosts")
    with pytest.raises(DnsUnavailable, match=r"cannot read .*not-a-dir/failover\.hosts"):
        await backend.set_address("192.168.1.10")
    with pytest.raises(DnsUnavailable, match="cannot read"):
        await backend.get_address()
    nowhere = HostsFileDns(NAME, Path("/proc/edgepair-test/failover.hosts"))  # can't mkdir
    with pytest.raises(DnsUnavailable, match="cannot write /proc/edgepair-test"):
        await nowhere.set_address("192.168.1.10")


def test_make_backend(tmp_path: Path) -> None:
    dns = DnsSection(backend="hostsfile", hosts_file=tmp_path / "h", dnsmasq_pidfile=None)
    backend = make_backend(dns, Secrets(handshake_key=b"k" * 32))
    assert isinstance(backend, HostsFileDns)
    assert backend.hosts_file == tmp_path / "h"
    assert backend.pidfile is None
