"""The Modbus TCP boundary: a small Device protocol and its pymodbus implementation.

pymodbus is imported when a ModbusDevice is made, never by the modules the api daemon loads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from handshake.errors import TemporaryError
from pi.control.profile import Register

# Registers closer than this are read in one request (the gap is read and dropped):
# fewer round trips beat a few wasted words.
MAX_GAP = 8
# Modbus caps a read at 125 registers (2000 coils); stay well below.
MAX_SPAN = 100
# On top of pymodbus' own timeout: a guard against a request that never resolves.
GUARD_S = 1.0
# Exception code 6 (slave device busy) is worth retrying; the others are configuration errors.
BUSY = 6


class DeviceError(TemporaryError):
    """The device did not answer, or answered with a Modbus exception."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)

    @property
    def busy(self) -> bool:
        return self.code == BUSY


class Device(Protocol):
    """What the executor needs from a Modbus device."""

    async def read(self, registers: Sequence[Register]) -> dict[str, int]:
        """Raw values by register name; DeviceError when any read fails."""

    async def write(self, register: Register, raw: int) -> None:
        """Write one register or coil; DeviceError when the device refuses or is silent."""

    async def close(self) -> None: ...


class ModbusDevice:
    """One Modbus TCP unit (an inverter, a relay) through pymodbus' asyncio client."""

    def __init__(self, host: str, port: int, device_id: int, timeout_s: float) -> None:
        # pymodbus logs each failed connect at ERROR with a frame dump; the executor reports
        # the same failure once (QuietLogger) and the recovery.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self.name = f"{host}:{port}/{device_id}"
        self.device_id = device_id
        self.timeout_s = timeout_s
        # reconnect_delay=0: no background reconnection; each call reconnects if needed, so
        # the executor's tick is the only retry cadence.
        self.client: AsyncModbusTcpClient = AsyncModbusTcpClient(
            host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)

    async def _connect(self) -> None:
        if self.client.connected:
            return
        async with asyncio.timeout(self.timeout_s + GUARD_S):
            ok = await self.client.connect()
        if not ok:
            raise DeviceError(f"{self.name}: cannot connect")

    async def read(self, registers: Sequence[Register]) -> dict[str, int]:
        out: dict[str, int] = {}
        for table, start, count, members in _runs(registers):
            words = await self._read(table, start, count)
            for reg in members:
                at = reg.address - start
                # A 32-bit value (SunSpec float32): high word first.
                out[reg.name] = words[at] if reg.words == 1 else words[at] << 16 | words[at + 1]
        return out

    async def _read(self, table: str, start: int, count: int) -> list[int]:
        await self._connect()
        dev = self.device_id
        try:
            async with asyncio.timeout(self.timeout_s + GUARD_S):
                if table == "coil":
                    resp = await self.client.read_coils(start, count=count, device_id=dev)
                elif table == "input":
                    resp = await self.client.read_input_registers(start, count=count, device_id=dev)
                else:
                    resp = await self.client.read_holding_registers(start, count=count, device_id=dev)
        except (ModbusException, TimeoutError, OSError) as exc:
            raise DeviceError(f"{self.name}: read {table} {start}+{count}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if resp.isError():
            code = getattr(resp, "exception_code", None)
            raise DeviceError(f"{self.name}: read {table} {start}+{count} refused "
                              f"(Modbus exception {code})", code)
        if table == "coil":
            return [int(bit) for bit in resp.bits[:count]]
        return list(resp.registers[:count])

    async def write(self, register: Register, raw: int) -> None:
        await self._connect()
        what = f"{self.name}: write {register.name} ({register.table} {register.address}) = {raw}"
        try:
            async with asyncio.timeout(self.timeout_s + GUARD_S):
                if register.table == "coil":
                    resp = await self.client.write_coil(register.address, bool(raw),
                                                        device_id=self.device_id)
                else:
                    resp = await self.client.write_register(register.address, raw,
                                                            device_id=self.device_id)
        except (ModbusException, TimeoutError, OSError) as exc:
            raise DeviceError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if resp.isError():
            code = getattr(resp, "exception_code", None)
            raise DeviceError(f"{what} refused (Modbus exception {code})", code)

    async def close(self) -> None:
        self.client.close()


def _runs(registers: Sequence[Register]) -> list[tuple[str, int, int, list[Register]]]:
    """Group registers into (table, start, count, members) reads."""
    runs: list[tuple[str, int, int, list[Register]]] = []
    for reg in sorted(registers, key=lambda r: (r.table, r.address)):
        last = reg.address + reg.words  # one past the register's last word
        if runs:
            table, start, count, members = runs[-1]
            end = start + count
            if table == reg.table and reg.address - end <= MAX_GAP and last - start <= MAX_SPAN:
                runs[-1] = (table, start, max(end, last) - start, [*members, reg])
                continue
        runs.append((reg.table, reg.address, reg.words, [reg]))
    return runs
