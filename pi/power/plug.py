"""A Tapo plug reached by address with python-kasa: no discovery, every update bounded.

Only the power daemon imports this module (python-kasa costs ~15 MB and 0.5 s to import).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

from kasa import (
    AuthenticationError,
    Credentials,
    Device,
    DeviceConfig,
    DeviceConnectionParameters,
    DeviceEncryptionType,
    DeviceFamily,
    KasaException,
    Module,
)
from kasa.exceptions import TimeoutError as KasaTimeoutError
from kasa.exceptions import _ConnectionError

from pi.power.config import PlugConfig
from pi.power.health import PlugError, Reading

# Newer P110 firmware speaks KLAP, older AES (securePassthrough); both with login v2 hashes.
ENCRYPTION = {"klap": DeviceEncryptionType.Klap, "aes": DeviceEncryptionType.Aes}
LOGIN_VERSION = 2
# Closing a connection to a plug that stopped answering must not hold up the poll loop.
CLOSE_TIMEOUT_S = 2.0


class KasaPlug:
    """python-kasa's SMART protocol to one plug; reconnects from scratch after any failure."""

    def __init__(self, plug: PlugConfig, username: str, password: str, timeout_s: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.plug = plug
        self.timeout_s = timeout_s
        self.clock = clock
        self._credentials = Credentials(username, password)
        self._device: Device | None = None

    def _device_config(self) -> DeviceConfig:
        return DeviceConfig(
            host=self.plug.address,
            port_override=self.plug.port,
            # python-kasa's own per-request timeout (whole seconds); the poll as a whole is
            # bounded by asyncio.timeout below, since kasa retries each method.
            timeout=max(1, math.ceil(self.timeout_s)),
            credentials=self._credentials,
            connection_type=DeviceConnectionParameters(
                device_family=DeviceFamily.SmartTapoPlug,
                encryption_type=ENCRYPTION[self.plug.encryption],
                login_version=LOGIN_VERSION))

    async def read(self) -> Reading:
        """One update of the plug and its energy meter; PlugError says why it failed."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._device is not None:
                    try:
                        await self._device.update()
                        return self._reading(self._device)
                    except (AuthenticationError, KasaTimeoutError, _ConnectionError):
                        raise
                    except (KasaException, PlugError):
                        # An update folds a failed query (wrong account, device error) into a
                        # generic error and keeps a failed module's old data: start again from
                        # scratch, which names the cause and leaves nothing stale behind.
                        await self.close()
                self._device = await Device.connect(config=self._device_config())
                return self._reading(self._device)
        except PlugError:
            await self.close()
            raise
        except AuthenticationError as exc:
            await self.close()
            raise PlugError("auth_failed", f"the plug refused the Tapo account: {exc}") from exc
        except (TimeoutError, KasaTimeoutError) as exc:
            await self.close()
            raise PlugError("unreachable", f"no answer within {self.timeout_s:g} s") from exc
        except (_ConnectionError, OSError) as exc:
            await self.close()
            raise PlugError("unreachable", f"cannot connect: {_cause(exc)}") from exc
        except KasaException as exc:
            await self.close()
            raise PlugError("stale", f"the plug answered with an error: {exc}") from exc
        except Exception as exc:  # a firmware answer python-kasa cannot parse: never crash
            await self.close()
            raise PlugError("stale", f"unexpected answer ({type(exc).__name__}: {exc})") from exc

    def _reading(self, device: Device) -> Reading:
        energy = device.modules.get(Module.Energy)
        if energy is None:
            raise PlugError("stale", "the plug has no energy meter")
        try:
            energy.status  # noqa: B018 - raises when this update's energy query failed
        except KasaException as exc:
            raise PlugError("stale", f"no energy reading: {_cause(exc)}") from exc
        watts = energy.current_consumption
        if watts is None:
            raise PlugError("stale", "the plug reported no power reading")
        today, month = energy.consumption_today, energy.consumption_this_month
        try:
            return Reading(at=self.clock(), w=float(watts),
                           today_wh=None if today is None else round(today * 1000),
                           month_wh=None if month is None else round(month * 1000))
        except (ValueError, OverflowError, TypeError) as exc:  # NaN, inf, not a number
            raise PlugError("stale", f"implausible reading: {watts!r} W, today {today!r}, "
                            f"month {month!r} kWh") from exc

    async def close(self) -> None:
        """Drop the connection; the next read() connects (and handshakes) again."""
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await device.disconnect()


def _cause(exc: BaseException) -> str:
    """The innermost message: kasa wraps the useful part (refused, reset…) in its own."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, KasaException) and len(exc.args) > 1 and isinstance(exc.args[1], BaseException):
        return _cause(exc.args[1])
    return str(exc) or type(exc).__name__
