"""A full state disk must not take failover down (#10 §2), through the real api daemon.

The Pi's state directory is a real, full tmpfs (the test mounts it: CI runs as root).
Before the fix: ~5 s after start the pi.json writer's OSError ended the daemon (DNS, API
and heartbeat together), a going-offline answered 500 with DNS left on the host, and a
plan upload answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from handshake import documents
from handshake.client import HandshakeClient
from handshake.documents import PiDocument
from handshake.errors import RequestError
from handshake.util.quietlog import QuietLogger
from tests.e2e import Site, stop, wait_dns, wait_http, wait_state
from tests.helpers import KEY
from tests.test_control_planapi import CONTROL, now_slot
from tests.test_control_support import plan_doc


@contextlib.contextmanager
def full_tmpfs(path: Path) -> Iterator[Path]:
    """A small tmpfs at ``path`` with its folders made, then filled to the last byte."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(path)],
                   check=True)
    try:
        for sub in ("public", "private", "log"):
            (path / sub).mkdir()
        fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * 4096):
                    pass
        finally:
            os.close(fd)
        assert os.statvfs(path).f_bavail == 0
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_state_disk_keeps_the_daemon_and_failover_up(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2, extra_pi=CONTROL.replace("127.0.0.1", "127.0.0.9"))
    host = site.start_host()
    with full_tmpfs(tmp_path / "pi-state"):
        pi = site.start_pi()
        try:
            await wait_http(site.api + "/api/v1/health")
            await wait_state(site.api, "online", timeout=15)
            await asyncio.sleep(6.5)  # past the pi.json writer's second round (5 s after start)
            assert pi.poll() is None, "the api daemon exited on a full disk"

            async with HandshakeClient(site.api, KEY) as client:
                answer = await client.request("POST", "/api/v1/host/going-offline", {
                    "reason": "shutdown", "snapshot": {"note": "x" * 4096}})
                assert answer["ack"] is True
                assert answer["dns_target"] == "pi"
                assert any("not stored" in s for s in answer["sanitised"]), answer
                await wait_dns("nas.home.arpa", site.dns_port, Site.PI_ADDRESS, timeout=5)

                with pytest.raises(RequestError) as refused:
                    await client.request("PUT", "/api/v1/plan", plan_doc(now_slot()))
                assert refused.value.status == 507
                assert refused.value.code == "insufficient_storage"
            assert pi.poll() is None
        finally:
            stop(host)
            code = stop(pi)
    log = (tmp_path / "pi.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "No space left on device" in log  # said, once per file, not silently dropped


def test_try_publish_warns_once_and_says_when_it_works_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    quiet = QuietLogger(logging.getLogger("t"))
    doc = PiDocument(generated_at="2030-01-01T00:00:00Z")
    gone = tmp_path / "blocked" / "pi.json"
    gone.parent.write_text("a file where the folder should be")  # as root: no EACCES
    with caplog.at_level(logging.INFO, logger="t"):
        assert documents.try_publish(gone, doc, quiet) is False
        assert documents.try_publish(gone, doc, quiet) is False
        gone.parent.unlink()
        gone.parent.mkdir()
        assert documents.try_publish(gone, doc, quiet) is True
    levels = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
    assert [lv for lv, _ in levels] == ["WARNING", "INFO"], levels
    assert documents.read_or_none(gone, PiDocument) is not None
