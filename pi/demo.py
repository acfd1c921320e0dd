"""``edgepair demo``: every Pi daemon and a simulated host, devices emulated, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from handshake.auth import keygen
from handshake.client import HandshakeClient
from handshake.errors import EdgepairError
from handshake.util.cliexit import report_group
from handshake.util.timeutil import utcnow
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
AWAKE_S = 90.0
# The emulated plugs' own account (loopback only).
TAPO_USER, TAPO_PASSWORD = "demo@example.com", "demo-password"
ROOT = Path(__file__).resolve().parent.parent


def write_configs(root: Path, api_port: int, plug_ports: dict[str, int],
                  inverter_port: int) -> tuple[Path, Path]:
    """Loopback-only configs for both sides (the demo's embedded defaults)."""
    root.mkdir(parents=True, exist_ok=True)
    secrets = root / "secrets.toml"
    if not secrets.exists():
        secrets.write_text(f'handshake_key = "{keygen()}"\ntapo_username = "{TAPO_USER}"\n'
                           f'tapo_password = "{TAPO_PASSWORD}"\n')
    os.chmod(secrets, 0o600)
    frontend = ROOT / "frontend-dist"
    plugs = "".join(f"""
[[power.plugs]]
name = "{name}"
address = "127.0.0.1"
port = {port}
encryption = "klap"
role = "{'host' if name == 'nas' else 'other'}"
interval_s = 2
""" for name, port in plug_ports.items())
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
{plugs}
[inbox]
dir = "{root / 'inbox'}"
settle_s = 2
rescan_s = 10
publish_interval_s = 5

[control]
profile = "sim-inverter"
address = "127.0.0.1"
port = {inverter_port}
tick_s = 2
settle_s = 0.2

[[control.loads]]
name = "boiler"
address = "127.0.0.1"
port = {inverter_port}
register = 100
""")
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
""")
    return pi, host


class SimulatedHost:
    """Sleeps until a magic packet for its MAC arrives on 127.0.0.1, boots, naps again."""

    def __init__(self, config: host_config.HostConfig, inverter: Any,
                 awake_s: float = AWAKE_S) -> None:
        self.config = config
        self.inverter = inverter
        self.awake_s = awake_s
        self.magic = bytes.fromhex("ff" * 6 + MAC.replace(":", "") * 16)
        self.wake = asyncio.Event()
        self.state = "asleep"  # what its plug sees: asleep | booting | up

    async def run(self) -> None:
        from host import agent, notify  # noqa: PLC0415

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
                self.wake.clear()
                self.state = "booting"
                log.info("magic packet received: the simulated host boots (%.0f s)", BOOT_S)
                await asyncio.sleep(BOOT_S)
                stop = asyncio.Event()
                server = asyncio.create_task(agent.run(self.config, stop=stop))
                await asyncio.sleep(0.3)
                self.state = "up"
                await self._notify(notify, "coming-online")
                await self.push_plan()
                log.info("simulated host is up; it will go to sleep in %.0f s", self.awake_s)
                await asyncio.sleep(self.awake_s)
                await self._notify(notify, "going-offline")
                stop.set()
                await server
                self.state = "asleep"
        finally:
            listener.cancel()
            sock.close()

    async def push_plan(self) -> None:
        """What the host's planner does after it wakes: plan the next 24 h, push it signed."""
        from host.planner.cli import demo_plan  # noqa: PLC0415

        soc = self.inverter.battery.soc_pct
        plan = await asyncio.to_thread(demo_plan, utcnow(), soc, int(time.time()), ("boiler",))
        key = self.config.secrets().handshake_key
        try:
            async with HandshakeClient(self.config.pi.url, key) as client:
                await client.request("PUT", "/api/v1/plan", plan)
            log.info("simulated host pushed an energy plan (%d slots)", len(plan["slots"]))
        except EdgepairError as exc:
            log.warning("simulated host could not push its plan: %s", exc)

    async def _listen(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        while True:
            data = await loop.sock_recv(sock, 1024)
            if data == self.magic:
                self.wake.set()

    async def _notify(self, notify: Any, kind: str) -> None:
        try:
            await notify.notify(self.config, kind, reason="suspend")
        except EdgepairError as exc:
            log.warning("simulated host could not notify the Pi: %s", exc)


def banner(api_port: int, root: Path) -> str:
    api = f"http://127.0.0.1:{api_port}"
    return f"""
edgepair demo is running (everything on 127.0.0.1; Ctrl-C stops it)

  dashboard      {api}/            (the host's full view, while it is up: http://{HOST_ADDRESS}:{HOST_PORT}/)
  host state     curl -s {api}/api/v1/status
  public files   {root / 'pi-state/public'}
  DNS answer     dig @127.0.0.1 -p {DNS_PORT} nas.home.arpa +short
                 {HOST_ADDRESS} = the host is online, {PI_ADDRESS} = the Pi stands in
  press wake     the dashboard's Wake button, or
                 curl -s -X POST {api}/api/v1/wake          (anonymous, rate-limited)
                 edgepair wake --config {root / 'pi.toml'}   (signed)
  drop a file    cp SOMEFILE {root / 'inbox'}/   → delivered to {root / 'host-inbox'} once the host is up

Emulated: two Tapo P110 plugs (KLAP; "nas" draws what the simulated host draws), a
Modbus hybrid inverter with a battery, and the host. The host sleeps now; wake it and
watch the DNS answer flip. It stays up {AWAKE_S:.0f} s, pushes an energy plan, then
announces going-offline with a snapshot and sleeps again.
"""


def main(directory: Path | None, api_port: int) -> int:
    root = (directory or Path(tempfile.mkdtemp(prefix="edgepair-demo-"))).resolve()
    try:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            asyncio.run(_run(root, api_port))
    except BaseExceptionGroup as group:  # a daemon could not start (a port in use, …)
        code = report_group(group)
        if code is None:
            raise
        print(f"edgepair demo: it needs 127.0.0.1 ports {api_port}, {DNS_PORT} and {WOL_PORT} "
              f"(udp), and {HOST_ADDRESS}:{HOST_PORT}: is another demo running?",
              file=sys.stderr)
        return code
    return 0


async def _run(root: Path, api_port: int) -> None:
    from pi import daemons  # noqa: PLC0415
    from pi.sim.inverter import EmulatedInverter  # noqa: PLC0415
    from pi.sim.plug import EmulatedPlug, host_draw  # noqa: PLC0415

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)

    inverter = EmulatedInverter(weather=True, speed=60)
    inverter_port = await inverter.start("127.0.0.1", 0)
    host_box: list[SimulatedHost] = []
    plugs = {
        "nas": EmulatedPlug(username=TAPO_USER, password=TAPO_PASSWORD, nickname="nas",
                            power=host_draw(lambda: host_box[0].state if host_box else "asleep")),
        "fridge": EmulatedPlug(username=TAPO_USER, password=TAPO_PASSWORD, nickname="fridge",
                               power_w=85.0),
    }
    ports = {name: await plug.start("127.0.0.1", 0) for name, plug in plugs.items()}
    try:
        pi_path, host_path = write_configs(root, api_port, ports, inverter_port)
        (root / "inbox").mkdir(exist_ok=True)
        pi = pi_config.load(pi_path)
        host = host_config.load(host_path)
        simulated = SimulatedHost(host, inverter)
        host_box.append(simulated)
        names = pi.daemons()
        pending = len(names)
        all_ready = asyncio.Event()

        def ready() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                all_ready.set()
                print(banner(api_port, root), flush=True)

        async def host_after_pi() -> None:
            await all_ready.wait()
            await simulated.run()

        async with asyncio.TaskGroup() as group:
            for name in names:
                module = daemons.load(name)
                assert module is not None, name
                group.create_task(module.run(pi, ready=ready, kick=lambda _name: None))
            group.create_task(host_after_pi())
    finally:
        # After the daemons: the control daemon writes the safe state on the way out.
        for plug in plugs.values():
            await plug.stop()
        await inverter.stop()
