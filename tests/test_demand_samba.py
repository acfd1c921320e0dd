"""SMB demand beside the Pi's own Samba: the shipped way, tested with the real smbd.

The inbox's Samba holds port 445 on the Pi. The README's recipe: the failover name answers
``pi.address`` while the host sleeps; give that its own address (an alias), bind Samba to
the Pi's main address only (``interfaces`` + ``bind interfaces only``), and list 445 in
``[wake_on_demand] ports``. Then an SMB client of the sleeping NAS reaches the demand
listener (and wakes the host) while the inbox share stays reachable at the Pi's address.
Here: Samba on 127.0.0.1 (the Pi's main address), pi.address 127.0.0.2, one free port.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from tests.e2e import Site, wait_http
from tests.test_demand_e2e import listening, running
from tests.test_inbox_samba import Smb

PI_MAIN_ADDRESS = "127.0.0.1"  # lo's own address: Samba binds only interface addresses


async def smbclient(address: str, port: int, conf: Path, *commands: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "smbclient", f"//{address}/inbox", "-p", str(port), "-N", "-s", str(conf),
        "-c", "; ".join(commands),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_smb_demand_on_the_alias_while_the_inbox_share_stays_up(tmp_path: Path) -> None:
    for tool in ("smbd", "smbclient"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install -y samba smbclient"
    share = tmp_path / "pi-inbox"
    share.mkdir()
    samba = Smb(tmp_path / "samba", share, address=PI_MAIN_ADDRESS)
    try:
        site = Site(tmp_path, extra_pi=f"""[wake_on_demand]
ports = [{samba.port}]
clients = ["127.0.0.0/8"]
""")
        async with listening(site) as nic:
            with running(site.start_pi()):
                await wait_http(site.api + "/api/v1/health")
                for _ in range(100):  # the listener opens right after the first publish
                    if f"listening for demand on {Site.PI_ADDRESS}:{samba.port}" in (
                            tmp_path / "pi.log").read_text():
                        break
                    await asyncio.sleep(0.05)
                # The inbox share on the Pi's own address answers as before.
                code, out = await smbclient(PI_MAIN_ADDRESS, samba.port, samba.conf, "ls")
                assert code == 0, out
                assert not await nic.next(0.5), "the inbox share's own client woke the host"
                # An SMB client of the sleeping NAS (its name answers pi.address): no share
                # there, but the connection is the demand.
                code, out = await smbclient(Site.PI_ADDRESS, samba.port, samba.conf, "ls")
                assert code != 0
                assert await nic.next(), "an SMB connection to the sleeping NAS woke nothing"
    finally:
        samba.stop()
    log = (tmp_path / "pi.log").read_text()
    assert "waking the host: demand:port from 127.0.0.1" in log
