#!/usr/bin/env python3
"""Shared parts of the power benchmarks (not a benchmark itself): emulated plugs and a Pi
config on loopback.

Importing it puts the repository root on ``sys.path`` (through ``_common``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from _common import free_port

from handshake.auth import keygen
from pi.sim.plug import DEFAULT_PASSWORD, DEFAULT_USERNAME, EmulatedPlug

ENCRYPTIONS = ("klap", "klap", "aes")  # two newer plugs and one on older firmware


class PowerSite:
    """Emulated P110s on 127.0.0.1 and a Pi config whose [power] section polls them."""

    def __init__(self, plugs: int = 3, *, interval_s: float = 5.0, timezone: str | None = None,
                 **power: Any) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="edgepair-power-bench-"))
        self.count = plugs
        self.interval_s = interval_s
        self.power = power
        self.timezone = timezone
        self.plugs = [EmulatedPlug(power_w=20.0 + 15 * i, encryption=ENCRYPTIONS[i % 3],
                                   nickname=f"plug {i}") for i in range(plugs)]
        self.config = self.root / "pi.toml"
        self.state_dir = self.root / "state"
        self.public_dir = self.state_dir / "public"
        self.database = self.state_dir / "private" / "power.sqlite3"

    async def start(self) -> None:
        for plug in self.plugs:
            await plug.start()
        secrets = self.root / "secrets.toml"
        secrets.write_text(f'handshake_key = "{keygen()}"\ntapo_username = "{DEFAULT_USERNAME}"\n'
                           f'tapo_password = "{DEFAULT_PASSWORD}"\n')
        secrets.chmod(0o600)
        keys = "\n".join(f"{k} = {json.dumps(v)}" for k, v in self.power.items())
        tables = "\n".join(f"""
[[power.plugs]]
name = "plug{i}"
address = "127.0.0.1"
port = {plug.port}
encryption = "{plug.encryption}"
role = "{'host' if i == 0 else 'other'}"
interval_s = {self.interval_s}
""" for i, plug in enumerate(self.plugs))
        self.config.write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{self.state_dir}"
secrets_file = "{secrets}"
[api]
listen = "127.0.0.1:{free_port()}"
[host]
address = "127.0.0.3"
mac = "02:ED:6E:9A:17:01"
url = "http://127.0.0.3:9"
[wol]
target = "127.0.0.1"
[dns]
listen = "127.0.0.1:{free_port()}"
{f'[schedule]{chr(10)}timezone = "{self.timezone}"' if self.timezone else ""}
[power]
{keys}
{tables}
""")

    async def stop(self) -> None:
        for plug in self.plugs:
            await plug.stop()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def power_json(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads((self.public_dir / "power.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return doc

    def all_ok(self) -> bool:
        doc = self.power_json()
        return doc is not None and len(doc["plugs"]) == self.count and all(
            p["health"] == "ok" for p in doc["plugs"])


if __name__ == "__main__":
    print(__doc__)
