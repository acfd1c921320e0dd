"""Inbox test helpers: a host config with [inbox], the daemon as a task, hashes, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from handshake import documents
from handshake.documents import HostDocument
from handshake.util.schema import HostPort
from handshake.util.timeutil import iso
from host.config import HostAgentSection, HostConfig, PiLink
from host.inbox.config import HostInboxConfig
from pi import config as pi_config
from pi.config import PiConfig
from pi.inbox import daemon
from tests.helpers import pi_toml, write_secrets


def host_config(tmp: Path, port: int = 0, **inbox: Any) -> HostConfig:
    """A host config whose inbox is ``tmp/host-inbox`` (state in ``tmp/host-state``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    secrets = write_secrets(tmp / "secrets.toml")
    return HostConfig(
        file=tmp / "host.toml",
        host=HostAgentSection(listen=HostPort("127.0.0.1", port), state_dir=tmp / "host-state",
                              secrets_file=secrets),
        pi=PiLink(url="http://127.0.0.1:9"),
        inbox=HostInboxConfig(dir=tmp / "host-inbox", **inbox),
    )


def pi_config_with_inbox(tmp: Path, host_url: str, *, settle_s: float = 0.1,
                         rescan_s: float = 5, api_port: int = 0,
                         inbox_extra: str = "") -> PiConfig:
    """A Pi config whose inbox is ``tmp/pi-inbox``, forwarding to ``host_url``."""
    path = pi_toml(tmp, host_url=host_url, api_port=api_port, extra=f"""
[inbox]
dir = "{tmp / 'pi-inbox'}"
settle_s = {settle_s}
rescan_s = {rescan_s}
publish_interval_s = 1
{inbox_extra}
""")
    return pi_config.load(path)


def set_host_state(config: PiConfig, state: str) -> None:
    """What the api daemon would publish: only ``state`` matters to the inbox."""
    documents.publish(config.public_dir / "host.json",
                      HostDocument(generated_at=iso(time.time()) or "", state=state))


def inbox_json(config: PiConfig) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((config.public_dir / "inbox.json").read_text())
    return doc


@contextlib.asynccontextmanager
async def running_inbox(config: PiConfig) -> AsyncIterator[asyncio.Task[None]]:
    """The inbox daemon as a task; cancelled (and checked for errors) on exit."""
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(config, ready=ready.set, kick=lambda name: None))
    try:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait([task, waiter], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()
        assert ready.is_set(), "the inbox daemon did not become ready"
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` by relative path (hidden ones too)."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():  # never open a FIFO
                with contextlib.suppress(FileNotFoundError):  # a daemon was quicker
                    out[str(path.relative_to(root))] = path.read_bytes()
    return out


async def until(check: Callable[[], bool], timeout: float = 10.0, what: str = "",
                every: float = 0.01) -> float:
    """Poll ``check`` every ``every`` s; the seconds it took (AssertionError past ``timeout``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what or check}")
        await asyncio.sleep(every)
    return time.monotonic() - start
