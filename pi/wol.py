"""Wake-on-LAN: a magic packet to the configured target."""

from __future__ import annotations

import asyncio
import logging

import wakeonlan

from pi.config import WolSection

log = logging.getLogger(__name__)

# Some NICs miss a single packet while in deep sleep; three spaced sends are customary.
REPEATS = 3
REPEAT_GAP_S = 0.1


class WolSender:
    """Sends magic packets for one MAC to ``[wol] target:port``."""

    def __init__(self, mac: str, wol: WolSection) -> None:
        self.mac = mac
        self.wol = wol
        self.sent = 0

    async def send(self) -> None:
        for i in range(REPEATS):
            if i:
                await asyncio.sleep(REPEAT_GAP_S)
            wakeonlan.wake(self.mac, host=self.wol.target, port=self.wol.port,
                           interface=self.wol.interface)
            self.sent += 1
        log.info("magic packet for %s sent to %s:%d", self.mac, self.wol.target, self.wol.port)
