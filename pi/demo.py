"""``edgepair demo``: the Pi api daemon and a simulated host, everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
from pathlib import Path

from handshake.auth import keygen
from handshake.errors import EdgepairError
from host import config as host_config
from pi import config as pi_config

log = logging.getLogger("edgepair.demo")

MAC = "02:ED:6E:9A:17:01"
PI_ADDRESS = "127.0.0.1"
HOST_ADDRESS = "127.0.0.3"
HOST_PORT = 8771
WOL_PORT = 9009
DNS_PORT = 5335
# The simulated host "boots" this long after the magic packet, then stays up this long.
BOOT_S = 3.0
AWAKE_S = 60.0


def write_configs(root: Path, api_port: int) -> tuple[Path, Path]:
    """Loopback-only configs for both sides (the demo's embedded defaults)."""
    root.mkdir(parents=True, exist_ok=True)
    secrets = root / "secrets.toml"
    if not secrets.exists():
        secrets.write_text(f'handshake_key = "{keygen()}"\n')
    os.chmod(secrets, 0o600)
    frontend = Path(__file__).resolve().parent.parent / "frontend-dist"
    pi = root / "pi.toml"
    pi.write_text(f"""# edgepair demo: the Pi side (everything on loopback)
[pi]
address = "{PI_ADDRESS}"
state_dir = "{root / 'pi-state'}"
secrets_file = "{secrets}"

[api]
listen = "127.0.0.1:{api_port}"
frontend_dir = "{frontend}"
allow_anonymous_wake = true
publish_interval_s = 5

[host]
address = "{HOST_ADDRESS}"
mac = "{MAC}"
url = "http://{HOST_ADDRESS}:{HOST_PORT}"
heartbeat_interval_s = 1
heartbeat_timeout_s = 0.5
fall = 3
rise = 2
boot_timeout_s = 30

[wol]
target = "127.0.0.1"
port = {WOL_PORT}

[dns]
backend = "builtin"
name = "nas.home.arpa"
ttl_s = 5
listen = "127.0.0.1:{DNS_PORT}"
reconcile_s = 10
""")
    host = root / "host.toml"
    host.write_text(f"""# edgepair demo: the simulated host's agent
[host]
listen = "{HOST_ADDRESS}:{HOST_PORT}"
state_dir = "{root / 'host-state'}"
secrets_file = "{secrets}"

[pi]
url = "http://127.0.0.1:{api_port}"
notify_deadline_s = 10

[snapshot]
volumes = ["{root}"]
""")
    return pi, host


class SimulatedHost:
    """Sleeps until a magic packet for its MAC arrives on 127.0.0.1, boots, naps again."""

    def __init__(self, config: host_config.HostConfig, awake_s: float = AWAKE_S) -> None:
        self.config = config
        self.awake_s = awake_s
        self.magic = bytes.fromhex("ff" * 6 + MAC.replace(":", "") * 16)
        self.wake = asyncio.Event()

    async def run(self) -> None:
        from host import agent, notify  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", WOL_PORT))
        sock.setblocking(False)
        listener = asyncio.create_task(self._listen(loop, sock))
        try:
            while True:
                log.info("simulated host is asleep; waiting for a magic packet on 127.0.0.1:%d",
                         WOL_PORT)
                await self.wake.wait()
                self.wake.clear()
                log.info("magic packet received: the simulated host boots (%.0f s)", BOOT_S)
                await asyncio.sleep(BOOT_S)
                stop = asyncio.Event()
                server = asyncio.create_task(agent.run(self.config, stop=stop))
                await asyncio.sleep(0.3)
                await self._notify(notify, "coming-online")
                log.info("simulated host is up; it will go to sleep in %.0f s", self.awake_s)
                await asyncio.sleep(self.awake_s)
                await self._notify(notify, "going-offline")
                stop.set()
                await server
        finally:
            listener.cancel()
            sock.close()

    async def _listen(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        while True:
            data = await loop.sock_recv(sock, 1024)
            if data == self.magic:
                self.wake.set()

    async def _notify(self, notify: object, kind: str) -> None:
        try:
            await notify.notify(self.config, kind, reason="suspend")  # type: ignore[attr-defined]
        except EdgepairError as exc:
            log.warning("simulated host could not notify the Pi: %s", exc)


def banner(api_port: int, root: Path) -> str:
    api = f"http://127.0.0.1:{api_port}"
    return f"""
edgepair demo is running (everything on 127.0.0.1; Ctrl-C stops it)

  dashboard      {api}/
  host state     curl -s {api}/api/v1/status
  public files   {root / 'pi-state/public'}
  DNS answer     dig @127.0.0.1 -p {DNS_PORT} nas.home.arpa +short
                 (or: python -c "import dns.resolver as r; x=r.Resolver(configure=False); \\
x.nameservers=['127.0.0.1']; x.port={DNS_PORT}; print(x.resolve('nas.home.arpa')[0])")
                 {HOST_ADDRESS} = the host is online, {PI_ADDRESS} = the Pi stands in
  press wake     curl -s -X POST {api}/api/v1/wake          (anonymous, rate-limited)
                 edgepair wake --config {root / 'pi.toml'}   (signed)

The simulated host sleeps now; wake it and watch the DNS answer flip. It stays up
{AWAKE_S:.0f} s, then announces going-offline with a snapshot and sleeps again.
"""


def main(directory: Path | None, api_port: int) -> int:
    root = directory or Path(tempfile.mkdtemp(prefix="edgepair-demo-"))
    pi_path, host_path = write_configs(root.resolve(), api_port)
    pi = pi_config.load(pi_path)
    host = host_config.load(host_path)

    async def body() -> None:
        from pi import api  # noqa: PLC0415

        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        async with asyncio.TaskGroup() as group:
            group.create_task(api.run(pi, ready=lambda: print(banner(api_port, root.resolve()),
                                                               flush=True)))
            group.create_task(SimulatedHost(host).run())

    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(body())
    return 0
