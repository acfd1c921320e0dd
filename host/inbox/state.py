"""The receiver's state in the host agent: the ledger, the public file, crash leftovers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from handshake import documents
from handshake.http import json_error
from handshake.util.quietlog import QuietLogger
from host.inbox import store
from host.inbox.config import HostInboxConfig
from host.inbox.ledger import Ledger

log = logging.getLogger("host.inbox.receiver")

T = TypeVar("T")
# inbox-received.json is rewritten at most this often while files pour in.
PUBLISH_GAP_S = 1.0


@dataclass(slots=True)
class Receiver:
    """The receiver's state: its config, the ledger and the public file's writer."""

    config: HostInboxConfig
    ledger_path: Path
    public_path: Path
    ledger: Ledger | None = None
    # Why the inbox can't work (its folder or the ledger unusable); the agent serves on.
    problem: str | None = None
    _dirty: asyncio.Event | None = None
    _quiet: QuietLogger = field(default_factory=lambda: QuietLogger(log))
    # All file work on one thread: many threads doing small syscalls spend their time
    # handing the GIL around; one keeps the event loop free and the disk just as busy.
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="inbox-store"))
    # A large file's SHA-256 runs beside its writes (hashlib lets go of the GIL).
    _hash_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="inbox-hash"))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the inbox's file thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    async def run_hash(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the inbox's hashing thread."""
        return await asyncio.get_running_loop().run_in_executor(self._hash_pool,
                                                                partial(fn, *args))

    def _shutdown(self) -> None:
        self._pool.shutdown()
        self._hash_pool.shutdown()

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: clear crash leftovers, open the ledger, keep the public file fresh."""
        try:
            removed = await self.run(store.clear_temp, self.config.dir)
            self.ledger = await self.run(Ledger, self.ledger_path)
        except (OSError, sqlite3.Error) as exc:
            # Health and the rest must stay up: the Pi keeps its files until this is fixed.
            self.problem = f"the inbox is unavailable: {exc}"
            log.error("%s", self.problem)
            try:
                yield
            finally:
                await asyncio.to_thread(self._shutdown)
            return
        if removed:
            log.info("removed %d incomplete upload(s) left by a previous run", removed)
        self._dirty = asyncio.Event()
        await self._publish()
        task = asyncio.create_task(self._publisher(), name="inbox-received")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self._dirty.is_set():
                await self._publish()
            await self.run(self.ledger.close)
            await asyncio.to_thread(self._shutdown)

    def changed(self) -> None:
        if self._dirty is not None:
            self._dirty.set()

    async def _publisher(self) -> None:
        assert self._dirty is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._publish()
            await asyncio.sleep(PUBLISH_GAP_S)

    async def _publish(self) -> None:
        assert self.ledger is not None
        ledger = self.ledger

        def write() -> None:
            documents.publish(self.public_path, ledger.document(time.time()))

        try:
            await self.run(write)
            self._quiet.success("publish", "%s written again", self.public_path)
        except OSError as exc:
            self._quiet.failure("publish", "cannot write %s: %s", self.public_path, exc)


RECEIVER_KEY = web.AppKey("inbox_receiver", Receiver)


def unavailable(receiver: Receiver) -> web.Response:
    """503: the inbox can't take files now (the Pi keeps them and tries again)."""
    return json_error(503, "inbox_unavailable", receiver.problem or "the inbox is starting")
