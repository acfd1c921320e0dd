"""A Modbus TCP device that serves a register map: a real pymodbus server on 127.0.0.1.

One block of holding registers (from ``base``, every address outside it answers "illegal
address" as a real device does). What clients write stays written (a read-back sees it);
``writes`` records each write, ``drop_writes`` acknowledges and ignores them, ``exception``
answers every request with that Modbus exception code. ``get``/``set`` read and change
registers behind the clients' back (``set`` is a device's own update: telemetry, a reset).
The profile simulators (pi/sim/deye.py, pi/sim/sunspec.py) build their maps on this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

_READ_HR, _WRITE_HR = 3, 16
_WRITES = {6, 16}


class RegisterMapDevice:
    """Holding registers ``base`` … ``base + size - 1``; ``await start()`` returns the port."""

    def __init__(self, values: Mapping[int, int], *, base: int = 0, size: int | None = None,
                 device_id: int = 1) -> None:
        top = max(values, default=base) + 1
        self.base, self.size = base, size if size is not None else top - base
        self.device_id = device_id
        self.image = [0] * self.size
        for address, value in values.items():
            self.image[address - base] = value & 0xFFFF
        self.writes: list[tuple[int, list[int]]] = []  # (address, values)
        self.drop_writes = False
        self.exception: int | None = None
        self.host, self.port = "127.0.0.1", 0
        self._server: ModbusTcpServer | None = None
        self._internal = False

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        device = SimDevice(id=self.device_id, action=self._action, simdata=[
            SimData(address=self.base, values=list(self.image), datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(device, address=(host, port))
        await server.serve_forever(background=True)
        self._server, self.host = server, host
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def get(self, address: int, count: int = 1) -> list[int]:
        assert self._server is not None
        self._internal = True
        try:
            return [int(v) for v in await self._server.async_getValues(
                self.device_id, _READ_HR, address, count)]
        finally:
            self._internal = False

    async def set(self, address: int, values: list[int]) -> None:
        assert self._server is not None
        self._internal = True
        try:
            await self._server.async_setValues(self.device_id, _WRITE_HR, address,
                                               [v & 0xFFFF for v in values])
        finally:
            self._internal = False

    def written(self) -> dict[int, int]:
        """The last value written to each address."""
        out: dict[int, int] = {}
        for address, values in self.writes:
            for i, v in enumerate(values):
                out[address + i] = v
        return out

    async def _action(self, func: int, start: int, address: int, count: int,
                      current: list[int], values: Any) -> ExcCodes | None:
        if self._internal:
            return None
        if self.exception is not None:
            return ExcCodes(self.exception)
        if values is not None and func in _WRITES:
            if self.drop_writes:
                values[:] = await self.get(address, count)
            else:
                self.writes.append((address, [int(v) for v in values]))
        return None
