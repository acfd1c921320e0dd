"""``edgepair pi run power``: Tapo plugs → sqlite history → power.json.

Light to import (``edgepair pi run api`` imports every daemon module to find its watchdog
loops): python-kasa is imported only when the daemon runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from handshake.errors import ConfigError
from pi.config import PiConfig
from pi.power.config import PowerConfig, credentials
from pi.power.plug import KasaPlug
from pi.power.service import PowerService

log = logging.getLogger("pi.power")

WATCHDOG_LOOPS = ("power",)
# python-kasa logs every retry and failed query at WARNING/ERROR; the daemon's own quiet
# log (first failure WARNING, repeats DEBUG, recovery INFO) speaks for the plugs instead.
# With --log-level DEBUG python-kasa's messages are shown.
KASA_LOG_LEVEL = logging.CRITICAL


async def run(config: PiConfig, *, ready: Callable[[], None], kick: Callable[[str], None]) -> None:
    """Poll every configured plug until cancelled."""
    power = config.power
    if not isinstance(power, PowerConfig):
        raise ConfigError([f"{config.file}: power: the power daemon needs a [power] section "
                           f"with at least one [[power.plugs]] table"])
    secrets = config.secrets()
    username, password = credentials(secrets.tapo_username, secrets.tapo_password,
                                     config.pi.secrets_file)
    links = {p.name: KasaPlug(p, username, password, power.update_timeout_s) for p in power.plugs}
    service = PowerService(config, power, dict(links))
    with quiet_kasa():
        await service.run(ready, kick)


@contextlib.contextmanager
def quiet_kasa() -> Iterator[None]:
    """Silence python-kasa's own logging unless the daemon logs at DEBUG."""
    kasa = logging.getLogger("kasa")
    before = kasa.level
    if not kasa.isEnabledFor(logging.DEBUG):
        kasa.setLevel(KASA_LOG_LEVEL)
    try:
        yield
    finally:
        kasa.setLevel(before)
