"""The Pi side of ``edgepair demo``: every Pi daemon, with emulated plugs and inverter.

Run by ``handshake.demo`` as ``python -m pi.demo --dir D --port P``: it writes the Pi's
config, starts the emulated devices and the daemons, and touches ``D/pi-ready`` once every
daemon is ready. The host's plug draws what the simulated host (another process) says it
is doing, through the ``host-power-state`` file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from handshake.command import configure_logging
from handshake.demo import (
    DNS_PORT,
    HOST_ADDRESS,
    HOST_PORT,
    HOST_POWER,
    MAC,
    PI_ADDRESS,
    READY,
    ROOT,
    SECRETS,
    TAPO_PASSWORD,
    TAPO_USER,
    WOL_PORT,
)
from handshake.util.cliexit import report_group
from pi import cli
from pi import config as pi_config
from pi.sim.inverter import EmulatedInverter
from pi.sim.plug import EmulatedPlug, host_draw


def write_config(root: Path, api_port: int, plug_ports: dict[str, int], inverter_port: int) -> Path:
    """The Pi's loopback-only config (the demo's embedded defaults)."""
    secrets = root / SECRETS
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

# While the host sleeps, a LAN client asking for its name wakes it (the Pi's own
# queries from 127.0.0.1 do not: that is where a local forwarder asks from), and a
# browser at http://{PI_ADDRESS}:{HOST_PORT}/ gets the "waking" page.
[wake_on_demand]
dns = true
http_ports = [{HOST_PORT}]
clients = ["127.0.0.0/8"]
min_interval_s = 30
{plugs}
# Plain storage on the Pi (an SMB share in a real install: scripts/samba/).
[share]
dir = "{root / 'share'}"

# The Pi's own state to the host each time it comes online (at most daily).
[backup]
after_online_s = 5
keep = 3

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
    return pi


def host_power(root: Path) -> str:
    """What the simulated host says it is doing (asleep until it has said anything)."""
    try:
        return (root / HOST_POWER).read_text().strip() or "asleep"
    except OSError:
        return "asleep"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pi.demo")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            asyncio.run(_run(args.dir.resolve(), args.port))
    except BaseExceptionGroup as group:  # a daemon could not start (a port in use, …)
        code = report_group(group)
        if code is None:
            raise
        print(f"edgepair demo: it needs 127.0.0.1 ports {args.port}, {DNS_PORT} and {WOL_PORT} "
              f"(udp), and {HOST_ADDRESS}:{HOST_PORT}: is another demo running?",
              file=sys.stderr)
        return code
    return 0


async def _run(root: Path, api_port: int) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)

    inverter = EmulatedInverter(weather=True, speed=60)
    inverter_port = await inverter.start("127.0.0.1", 0)
    plugs = {
        "nas": EmulatedPlug(username=TAPO_USER, password=TAPO_PASSWORD, nickname="nas",
                            power=host_draw(lambda: host_power(root))),
        "fridge": EmulatedPlug(username=TAPO_USER, password=TAPO_PASSWORD, nickname="fridge",
                               power_w=85.0),
    }
    ports = {name: await plug.start("127.0.0.1", 0) for name, plug in plugs.items()}
    try:
        (root / "inbox").mkdir(exist_ok=True)
        (root / "share").mkdir(exist_ok=True)
        config = pi_config.load(write_config(root, api_port, ports, inverter_port))
        modules = {name: cli.daemon_module(name) for name in config.daemons()}
        await cli.run_daemons(config, modules, ready=(root / READY).touch,
                              kick=lambda _name: None)
    finally:
        # After the daemons: the control daemon writes the safe state on the way out.
        for plug in plugs.values():
            await plug.stop()
        await inverter.stop()


if __name__ == "__main__":
    sys.exit(main())
