"""The host side of ``edgepair demo``: a simulated host that sleeps until a magic packet.

Run by ``handshake.demo`` as ``python -m host.demo --dir D --pi-port P`` once the Pi side is
ready. It listens for its magic packet on 127.0.0.1, "boots", runs the real host agent,
says coming-online, pushes an energy plan, and after a while says going-offline and sleeps
again. What it is doing goes to ``D/host-power-state`` for the Pi's emulated plug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Literal

from handshake import documents
from handshake.client import HandshakeClient
from handshake.command import configure_logging
from handshake.demo import (
    BOOT_S,
    HOST_ADDRESS,
    HOST_PORT,
    HOST_POWER,
    IDLE_CHECK_S,
    MAC,
    ROOT,
    SECRETS,
    SUSPEND,
    WOL_PORT,
    idle_after_s,
)
from handshake.documents import ControlDocument
from handshake.errors import EdgepairError
from handshake.util import atomic
from handshake.util.timeutil import utcnow
from host import agent, notify
from host import config as host_config
from host.planner.cli import demo_plan

log = logging.getLogger("edgepair.demo")
# The battery's state of charge the first plan starts from, before control.json exists.
DEFAULT_SOC_PCT = 50.0
# The agent needs this long to listen after it is started.
AGENT_START_S = 0.3
POLL_S = 0.2


def write_config(root: Path, api_port: int) -> Path:
    """The simulated host's loopback-only config."""
    secrets = root / SECRETS
    frontend = ROOT / "frontend-dist"
    host = root / "host.toml"
    host.write_text(f"""# edgepair demo: the simulated host's agent
[host]
listen = "{HOST_ADDRESS}:{HOST_PORT}"
state_dir = "{root / 'host-state'}"
secrets_file = "{secrets}"
frontend_dir = "{frontend}"

[pi]
url = "http://127.0.0.1:{api_port}"
notify_deadline_s = 10

[snapshot]
volumes = ["{root}"]

[inbox]
dir = "{root / 'host-inbox'}"

# The real idle loop; "suspending" asks the simulated host to stop its agent and sleep
# until the next magic packet (the command is ended with the agent, like a real resume).
[idle]
enabled = true
idle_after_s = {idle_after_s():g}
check_interval_s = {IDLE_CHECK_S:g}
min_sleep_s = 0
suspend_command = ["sh", "-c", "touch '{root / SUSPEND}' && exec sleep 3600"]
""")
    return host


class SimulatedHost:
    """Sleeps until a magic packet for its MAC arrives on 127.0.0.1, boots, naps again."""

    def __init__(self, config: host_config.HostConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.magic = bytes.fromhex("ff" * 6 + MAC.replace(":", "") * 16)
        self.wake = asyncio.Event()
        self.state = "asleep"
        self._say("asleep")

    def _say(self, state: str) -> None:
        """What the host's plug sees: asleep | booting | up."""
        self.state = state
        atomic.write_bytes(self.root / HOST_POWER, state.encode())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", WOL_PORT))
        sock.setblocking(False)
        listener = asyncio.create_task(self._listen(loop, sock))
        try:
            await self.push_plan()
            while True:
                log.info("simulated host is asleep; waiting for a magic packet on 127.0.0.1:%d",
                         WOL_PORT)
                await self.wake.wait()
                self._say("booting")
                log.info("magic packet received: the simulated host boots (%.0f s)", BOOT_S)
                await asyncio.sleep(BOOT_S)
                stop = asyncio.Event()
                server = asyncio.create_task(agent.run(self.config, stop=stop))
                await asyncio.sleep(AGENT_START_S)
                self._say("up")
                await self._notify("coming-online")
                await self.push_plan()
                log.info("simulated host is up; its idle loop suspends it after %.0f s idle "
                         "(edgepair host idle status shows why it is still up)",
                         idle_after_s())
                await self._suspend_requested(server)
                self.wake.clear()  # the repeats of the last wake's magic packet are old news
                log.info("the idle loop said going-offline and suspends the simulated host")
                stop.set()
                await server
                self._say("asleep")
        finally:
            listener.cancel()
            sock.close()

    def soc_pct(self) -> float:
        """The battery's state of charge as the Pi's control.json last reported it."""
        doc = documents.read_or_none(self.root / "pi-state" / "public" / "control.json",
                                     ControlDocument)
        soc = doc.readback.soc_pct if doc is not None and doc.readback is not None else None
        return DEFAULT_SOC_PCT if soc is None else soc

    async def push_plan(self) -> None:
        """What the host's planner does after it wakes: plan the next 24 h, push it signed."""
        plan = await asyncio.to_thread(demo_plan, utcnow(), self.soc_pct(), int(time.time()),
                                       ("boiler",))
        key = self.config.secrets().handshake_key
        try:
            async with HandshakeClient(self.config.pi.url, key) as client:
                await client.request("PUT", "/api/v1/plan", plan)
            log.info("simulated host pushed an energy plan (%d slots)", len(plan["slots"]))
        except EdgepairError as exc:
            log.warning("simulated host could not push its plan: %s", exc)

    async def _suspend_requested(self, server: asyncio.Task[None]) -> None:
        """Until the agent's suspend_command asks for sleep (or the agent ends)."""
        flag = self.root / SUSPEND
        flag.unlink(missing_ok=True)
        while not flag.exists() and not server.done():  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(POLL_S)
        flag.unlink(missing_ok=True)

    async def _listen(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        while True:
            data = await loop.sock_recv(sock, 1024)
            if data == self.magic:
                self.wake.set()

    async def _notify(self, kind: Literal["going-offline", "coming-online"]) -> None:
        try:
            await notify.notify(self.config, kind, reason="suspend")
        except EdgepairError as exc:
            log.warning("simulated host could not notify the Pi: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.demo")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--pi-port", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging()
    root = args.dir.resolve()
    config = host_config.load(write_config(root, args.pi_port))
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(_run(SimulatedHost(config, root)))
    return 0


async def _run(host: SimulatedHost) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    await host.run()


if __name__ == "__main__":
    sys.exit(main())
