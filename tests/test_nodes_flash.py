"""``edgepair node flash --dry-run`` through the real CLI: the exact commands, the bundle,
and the bundle itself run on the MicroPython unix port until it pairs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pi.nodes.flash import FIRMWARE_DIR
from tests.nodesite import Board, NodeSite, cli, until


@pytest.fixture
def site(tmp_path: Path) -> NodeSite:
    site = NodeSite(tmp_path)
    yield site
    site.close()


async def test_dry_run_prints_the_commands_and_writes_a_bundle_that_pairs(site: NodeSite) -> None:
    out_dir = site.root / "bundle"
    code, out, err = await cli(site, "flash", "--port", "/dev/ttyUSB0", "--erase",
                               "--image", "/tmp/ESP32_GENERIC.bin", "--wifi-ssid", "home",
                               "--capability", "relay:pin=26,default=true",
                               "--capability", "input", "--dry-run", "--out", str(out_dir))
    assert code == 0, err
    hwid = re.search(r"^hardware id: (\S+)$", out, re.M)
    pairing = re.search(r"^pairing code: ([2-9A-Z]{8})$", out, re.M)
    assert hwid
    assert pairing
    commands = [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("$ ")]
    files = sorted(p.name for p in FIRMWARE_DIR.glob("*.py"))
    assert commands == [
        ["esptool", "--port", "/dev/ttyUSB0", "erase-flash"],
        ["esptool", "--port", "/dev/ttyUSB0", "--baud", "460800", "write-flash", "0x1000",
         "/tmp/ESP32_GENERIC.bin"],
        ["mpremote", "connect", "/dev/ttyUSB0", "fs", "cp",
         *[str(out_dir / n) for n in sorted([*files, "config.json"])], ":"],
        ["mpremote", "connect", "/dev/ttyUSB0", "reset"],
    ]
    # Each subcommand exists in the esptool and mpremote this project installs.
    bin_dir = Path(sys.executable).parent
    for sub in ("erase-flash", "write-flash"):
        assert subprocess.run([bin_dir / "esptool", sub, "--help"], capture_output=True,
                              check=False).returncode == 0
    assert "reset" in subprocess.run([bin_dir / "mpremote", "help"], capture_output=True,
                                     text=True, check=False).stdout
    config = json.loads((out_dir / "config.json").read_text())
    assert config["hwid"] == hwid[1]
    assert config["pairing_code"] == pairing[1]
    assert config["pi_url"] == site.url
    assert config["wifi"] == {"ssid": "home", "password": ""}
    assert config["capabilities"] == {"relay": {"pin": 26, "default": True},
                                      "input": {"pin": 14, "name": "door"}}
    assert "***" in out  # the Wi-Fi password is never printed
    for name in files:
        assert (out_dir / name).read_bytes() == (FIRMWARE_DIR / name).read_bytes()

    # The very bundle, on MicroPython: it says hello, pairs with the printed code, reports.
    await site.start()
    board = Board(site, out_dir, hwid[1], pairing[1])
    board.inputs(pins={"14": 1})
    board.start()
    await until(lambda: site.entry(hwid[1]), what="the bundle's hello")
    assert (await cli(site, "approve", hwid[1], "--code", pairing[1], "--name", "hall"))[0] == 0
    door = await until(lambda: (e := site.entry(hwid[1])) and e.readings.get("door"),
                       what="the door contact in nodes.json")
    assert door.value is True
    assert board.pin(26) == 1  # the relay at its configured default
    code, out, _ = await cli(site, "rename", "hall", "front-door")
    assert code == 0
    code, out, _ = await cli(site, "list")
    assert re.search(rf"^{hwid[1]}\s+online\s+front-door\s", out, re.M)


async def test_flash_refuses_unknown_capabilities_and_settings(site: NodeSite) -> None:
    for spec, expected in (("laser", "expected one of relay"),
                           ("motor:max_s=500", "0 < max_s ≤ 120"),
                           ("relay:pins=3", "expected pin, default")):
        code, _, err = await cli(site, "flash", "--port", "/dev/null", "--dry-run",
                                 "--capability", spec, "--out", str(site.root / "b"))
        assert code == 1, spec
        assert expected in err, err
    assert not (site.root / "b").exists()


async def test_the_cli_says_when_the_daemon_is_down_or_not_configured(site: NodeSite) -> None:
    code, _, err = await cli(site, "list")
    assert code == 1
    assert f"the node daemon does not answer at {site.url}" in err
    assert "edgepair pi run node" in err
    text = site.config.read_text()
    site.config.write_text(text[:text.index("[nodes]")])
    code, _, err = await cli(site, "list")
    assert code == 2
    assert "[nodes]: section missing" in err
