"""``edgepair demo``: the Pi side and a simulated host, each in its own process, on 127.0.0.1.

This module owns what both sides of the demo share — the addresses, ports and MAC, the
secrets file, the simulated host's power state file — and runs the two sides as child
processes (``python -m pi.demo``, ``python -m host.demo``): it imports neither. The host
starts once every Pi daemon is ready; Ctrl-C or SIGTERM stops the host, then the Pi (whose
control daemon writes the inverter's safe state on the way out).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from handshake.auth import keygen
from handshake.util.cliexit import EXIT_FAILED, EXIT_OK

MAC = "02:ED:6E:9A:17:01"
PI_ADDRESS = "127.0.0.1"
HOST_ADDRESS = "127.0.0.3"
HOST_PORT = 8771
WOL_PORT = 9009
DNS_PORT = 5335
API_PORT = 8770
# The simulated host "boots" this long after the magic packet; its agent's [idle] loop
# suspends it after this long without activity (checked every IDLE_CHECK_S).
BOOT_S = 3.0
IDLE_AFTER_S = 60.0
IDLE_CHECK_S = 2.0
# Overrides IDLE_AFTER_S (seconds > 0), for a shorter cycle (the demo's own test uses it).
IDLE_ENV = "EDGEPAIR_DEMO_IDLE_S"
# A LAN client of the demo (the Pi's own 127.0.0.1 is where a forwarder asks from).
CLIENT_ADDRESS = "127.0.0.9"
# The emulated plugs' own account (loopback only).
TAPO_USER, TAPO_PASSWORD = "demo@example.com", "demo-password"
ROOT = Path(__file__).resolve().parent.parent
# Files under the demo's directory that both sides know.
SECRETS = "secrets.toml"
READY = "pi-ready"  # written by the Pi side once every daemon is ready
HOST_POWER = "host-power-state"  # asleep | booting | up: what the host's plug measures
SUSPEND = "host-suspend"  # written by the simulated host's suspend_command: "sleep now"
# Every daemon imports kasa, pymodbus and aiohttp before it listens.
PI_START_TIMEOUT_S = 60.0
# Each side gets this long to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0
POLL_S = 0.1


class _Stop(Exception):
    """SIGTERM or SIGINT reached the demo."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgepair demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="state directory (default: temp)")
    parser.add_argument("--port", type=int, default=API_PORT, help="the Pi api's port")
    args = parser.parse_args(argv)
    idle_s = idle_after_s()
    root = (args.dir or Path(tempfile.mkdtemp(prefix="edgepair-demo-"))).resolve()
    write_secrets(root)
    (root / READY).unlink(missing_ok=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stop)
    children: list[subprocess.Popen[bytes]] = []
    try:
        pi = _spawn("pi.demo", "--dir", str(root), "--port", str(args.port))
        children.append(pi)
        if not _wait_ready(root / READY, pi):
            return pi.returncode if pi.returncode is not None else EXIT_FAILED
        children.insert(0, _spawn("host.demo", "--dir", str(root), "--pi-port", str(args.port)))
        print(banner(args.port, root, idle_s), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(POLL_S)
        print("edgepair demo: a side stopped unexpectedly; stopping the other", file=sys.stderr)
        return EXIT_FAILED
    except _Stop:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:  # the host first, then the Pi
            _stop(child)


def idle_after_s() -> float:
    """How long the simulated host stays up with nothing to do: IDLE_AFTER_S or $IDLE_ENV."""
    text = os.environ.get(IDLE_ENV)
    if text is None:
        return IDLE_AFTER_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86400:
        raise SystemExit(f"edgepair demo: {IDLE_ENV}: expected seconds > 0 and ≤ 86400, "
                         f"got {text!r}")
    return value


def write_secrets(root: Path) -> Path:
    """The demo's one secrets file (both sides read the handshake key from it)."""
    root.mkdir(parents=True, exist_ok=True)
    secrets = root / SECRETS
    if not secrets.exists():
        secrets.write_text(f'handshake_key = "{keygen()}"\ntapo_username = "{TAPO_USER}"\n'
                           f'tapo_password = "{TAPO_PASSWORD}"\n')
    os.chmod(secrets, 0o600)
    return secrets


def _spawn(module: str, *args: str) -> subprocess.Popen[bytes]:
    # Its own session: a Ctrl-C in the terminal reaches only this process, which stops
    # the sides in order, once each.
    return subprocess.Popen([sys.executable, "-m", module, *args], start_new_session=True)


def _wait_ready(ready: Path, pi: subprocess.Popen[bytes]) -> bool:
    end = time.monotonic() + PI_START_TIMEOUT_S
    while not ready.exists():
        if pi.poll() is not None:
            return False
        if time.monotonic() > end:
            print(f"edgepair demo: the Pi side did not start in {PI_START_TIMEOUT_S:.0f} s",
                  file=sys.stderr)
            return False
        time.sleep(POLL_S)
    return True


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def banner(api_port: int, root: Path, idle_s: float = IDLE_AFTER_S) -> str:
    api = f"http://127.0.0.1:{api_port}"
    return f"""
edgepair demo is running (everything on 127.0.0.1; Ctrl-C stops it)

  dashboard      {api}/            (the host's full view, while it is up: http://{HOST_ADDRESS}:{HOST_PORT}/)
  host state     curl -s {api}/api/v1/status
  public files   {root / 'pi-state/public'}
  DNS answer     dig @127.0.0.1 -p {DNS_PORT} nas.home.arpa +short
                 {HOST_ADDRESS} = the host is online, {PI_ADDRESS} = the Pi stands in
  wake on demand dig -b {CLIENT_ADDRESS} @127.0.0.1 -p {DNS_PORT} nas.home.arpa +short
                 (a LAN client asks for the sleeping host's name: the Pi wakes it), or open
                 http://{PI_ADDRESS}:{HOST_PORT}/ (the "waking" page, then the host's own view)
  press wake     the dashboard's Wake button, or
                 curl -s -X POST {api}/api/v1/wake          (anonymous, rate-limited)
                 edgepair wake --config {root / 'pi.toml'}   (signed)
  drop a file    cp SOMEFILE {root / 'inbox'}/   → delivered to {root / 'host-inbox'} once the host is up

Emulated: two Tapo P110 plugs (KLAP; "nas" draws what the simulated host draws), a
Modbus hybrid inverter with a battery, and the host. The host sleeps now; wake it and
watch the DNS answer flip. Once up it pushes an energy plan and takes the inbox's files;
after {idle_s:.0f} s with nothing to do its idle loop announces going-offline (with
a snapshot and its wake_at) and it suspends by itself:
  idle checks    edgepair host idle status --config {root / 'host.toml'}
  usage          {root / 'pi-state/public/usage.json'} and the dashboard's Host usage card
  Pi backup      {root / 'host-state/backups'}  (sent once the host is up; the Pi card shows
                 it; edgepair pi restore FILE --config … rebuilds a card from it)
"""
