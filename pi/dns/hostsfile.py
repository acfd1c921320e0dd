"""dnsmasq backend: an addn-hosts file with the one ``"IP NAME"`` line, then SIGHUP.

dnsmasq: ``addn-hosts=/var/lib/edgepair/failover.hosts`` (the file is edgepair's alone) and
``local-ttl=5``, else hosts-file records are served with TTL 0. With ``hostsdir=`` instead,
dnsmasq notices the change by itself and no pidfile is needed. Pi-hole's pihole-FTL is
dnsmasq inside: its pidfile is ``/run/pihole-FTL.pid``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
from pathlib import Path

from handshake.util import atomic
from pi.dns import DnsRejected, DnsUnavailable, find_address

log = logging.getLogger(__name__)

HEADER = "# written by edgepair: the failover name; changes here are overwritten\n"
# SIGHUP kills most programs: only signal a pid whose /proc/PID/comm is one of these.
DNSMASQ_NAMES = ("dnsmasq", "pihole-FTL")


class HostsFileDns:
    """Writes ``hosts_file`` atomically and asks dnsmasq (``pidfile``) to reread it."""

    def __init__(self, name: str, hosts_file: Path, pidfile: Path | None = None, *,
                 process_names: tuple[str, ...] = DNSMASQ_NAMES) -> None:
        self.name = name.lower().rstrip(".")
        self.hosts_file = hosts_file
        self.pidfile = pidfile
        self.process_names = process_names
        self._warned = False

    async def start(self) -> None:
        if self.pidfile is None:
            log.info("no dns.dnsmasq_pidfile: dnsmasq must watch %s itself (hostsdir=)",
                     self.hosts_file)

    async def set_address(self, address: str) -> None:
        text = str(ipaddress.ip_address(address))
        content = f"{HEADER}{text} {self.name}\n".encode()
        if await self._read() == content:
            log.debug("%s already says %s for %s", self.hosts_file, text, self.name)
            return
        try:
            await asyncio.to_thread(atomic.write_bytes, self.hosts_file, content, 0o644)
        except OSError as exc:
            raise _file_error(exc, "write", self.hosts_file) from exc
        log.info("%s now answers %s (%s)", self.name, text, self.hosts_file)
        if self.pidfile is not None:
            await asyncio.to_thread(self._reload, self.pidfile)

    async def get_address(self) -> str | None:
        content = await self._read()
        if content is None:
            return None
        lines = [line.partition("#")[0] for line in content.decode(errors="replace").splitlines()]
        return find_address(lines, self.name)

    async def close(self) -> None:
        """Nothing to release: the file stays, so dnsmasq keeps answering."""

    async def _read(self) -> bytes | None:
        try:
            return await asyncio.to_thread(_read, self.hosts_file)
        except OSError as exc:
            raise _file_error(exc, "read", self.hosts_file) from exc

    def _reload(self, pidfile: Path) -> None:
        """SIGHUP dnsmasq. A missing or stale pidfile means dnsmasq isn't running: it reads
        the file when it starts, so that is a warning, not an error."""
        try:
            pid = int(pidfile.read_text().split()[0])
            if pid <= 1:
                raise ValueError(pid)
            comm = _comm(pid)
            if comm is not None and comm not in self.process_names:
                raise ProcessLookupError(f"pid {pid} is {comm!r}, not dnsmasq (stale pidfile?)")
            os.kill(pid, signal.SIGHUP)
        except PermissionError as exc:
            raise DnsRejected(f"cannot signal dnsmasq ({pidfile}): permission denied; run "
                              f"edgepair as dnsmasq's user or use hostsdir= (no signal "
                              f"needed)") from exc
        except (OSError, ValueError, IndexError) as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "could not ask dnsmasq to reread %s (pidfile %s: %s); it will "
                    "answer the new address after its next reload", self.hosts_file, pidfile,
                    _describe(exc))
        else:
            if self._warned:
                log.info("dnsmasq (pid %d) reloads %s again", pid, self.hosts_file)
            self._warned = False
            log.debug("sent SIGHUP to dnsmasq (pid %d)", pid)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _file_error(exc: OSError, verb: str, path: Path) -> Exception:
    if isinstance(exc, PermissionError):
        return DnsRejected(f"cannot {verb} {path}: permission denied (dns.hosts_file must be "
                           f"writable by edgepair and readable by dnsmasq)")
    return DnsUnavailable(f"cannot {verb} {path}: {exc.strerror or exc}")


def _comm(pid: int) -> str | None:
    """The process's name; None where /proc can't tell (then the pidfile is trusted)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except OSError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, ProcessLookupError):
        return str(exc) if exc.args and isinstance(exc.args[0], str) else "no such process"
    if isinstance(exc, ValueError | IndexError):
        return "no process id in it"
    return str(exc) or type(exc).__name__
