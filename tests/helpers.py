"""Test helpers: config files in tmp_path, keys, free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from handshake.auth import keygen

KEY_HEX = keygen()
KEY = bytes.fromhex(KEY_HEX)


# Ports handed out by free_port in this test process: the kernel may offer a port again
# as soon as the probing socket is closed, and two roles must never share one.
_HANDED_OUT: set[int] = set()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free now and not handed out before; a UDP one is free for TCP too
    (the builtin DNS responder listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            if kind == socket.SOCK_DGRAM:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                        tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def write_secrets(path: Path, key_hex: str = KEY_HEX, mode: int = 0o600, extra: str = "") -> Path:
    path.write_text(f'handshake_key = "{key_hex}"\n{extra}')
    os.chmod(path, mode)
    return path


def pi_toml(tmp: Path, *, host_url: str = "http://127.0.0.1:9", api_port: int = 0,
            dns_port: int = 0, wol_port: int = 9, extra: str = "", host_extra: str = "",
            dns_extra: str = "", api_extra: str = "", anonymous_wake: bool = True) -> Path:
    """A Pi config in ``tmp`` (loopback only) and its secrets file."""
    secrets = write_secrets(tmp / "secrets.toml")
    path = tmp / "pi.toml"
    path.write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{tmp / 'state'}"
secrets_file = "{secrets}"

[api]
listen = "127.0.0.1:{api_port or free_port()}"
allow_anonymous_wake = {str(anonymous_wake).lower()}
{api_extra}

[host]
address = "127.0.0.3"
mac = "AA:BB:CC:DD:EE:FF"
url = "{host_url}"
heartbeat_interval_s = 0.1
heartbeat_timeout_s = 0.1
fall = 3
rise = 2
boot_timeout_s = 30
{host_extra}

[wol]
target = "127.0.0.1"
port = {wol_port}

[dns]
backend = "builtin"
name = "nas.home.arpa"
ttl_s = 5
listen = "127.0.0.1:{dns_port or free_port(socket.SOCK_DGRAM)}"
reconcile_s = 0.2
{dns_extra}
{extra}
""")
    return path
