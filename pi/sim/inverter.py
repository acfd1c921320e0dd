"""An emulated hybrid inverter: a real pymodbus Modbus TCP server on 127.0.0.1 with a battery model.

It speaks the ``sim-inverter`` profile (pi/control/profiles/sim-inverter.toml): holding
registers 0-4 telemetry (SoC in 0.1 %, battery W + charging, grid W + import, PV W after
curtailment, load W), 10-15 control (mode 0 self-consumption / 1 hold / 2 charge / 3
discharge, charge W, SoC target, max discharge W, discharge W, export limit W with 65535 = no
limit), coils from 100 for simulated loads. The SoC follows the battery power; the grid meter
never reads a feed-in above the export limit: PV is curtailed first, then the battery's own
feed-in (on the model step after the write: within one tick of the executor's).

Fault switches for tests: ``drop_writes`` (acknowledge and ignore), ``exception`` (answer
every request with that Modbus exception code), ``write_exception`` (only writes),
``busy_writes`` (answer that many writes "device busy"), ``go_down()``/``come_back()``
(registers are kept), ``poke()`` (change a register behind the client's back). ``writes`` and
``reads`` record what clients did.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

SOC, BATTERY_W, GRID_W, PV_W, LOAD_W = 0, 1, 2, 3, 4
MODE, CHARGE_W, SOC_TARGET, MAX_DISCHARGE_W, DISCHARGE_W, EXPORT_LIMIT_W = 10, 11, 12, 13, 14, 15
LOAD_COILS = 100
NORMAL, HOLD, CHARGE, DISCHARGE = 0, 1, 2, 3
NO_EXPORT_LIMIT = 0xFFFF
# Read/write function codes of holding registers and coils (pymodbus' datastore keys on them).
_READ_HR, _WRITE_HR, _READ_COILS, _WRITE_COILS = 3, 16, 1, 15
_WRITES = {5, 6, 15, 16}


@dataclass(slots=True)
class Battery:
    """The battery and the household around it; powers in W, SoC in %."""

    capacity_wh: float = 10_000.0
    soc_pct: float = 50.0
    max_w: float = 5000.0
    efficiency: float = 0.95  # each way
    reserve_pct: float = 5.0  # the inverter's own discharge floor
    pv_w: float = 0.0  # what the panels could give
    load_w: float = 500.0
    pv_used_w: float = 0.0  # what they gave (after curtailment), as the inverter reports it

    def step(self, dt_s: float, mode: int, charge_w: float, soc_target: float,
             max_discharge_w: float, discharge_w: float = 0.0,
             export_limit_w: float | None = None) -> tuple[float, float]:
        """Advance ``dt_s`` seconds; returns (battery W, grid W)."""
        surplus = self.pv_w - self.load_w
        if mode == CHARGE and self.soc_pct < soc_target:
            battery = min(charge_w, self.max_w)  # PV first, the grid for the rest
        elif mode == DISCHARGE and (self.soc_pct > soc_target or discharge_w == 0):
            battery = -min(discharge_w, self.max_w)  # the load first, the rest exported
        elif mode in (HOLD, CHARGE, DISCHARGE):
            battery = min(max(surplus, 0.0), self.max_w)
        else:
            battery = min(max(surplus, -min(max_discharge_w, self.max_w)), self.max_w)
        if (battery > 0 and self.soc_pct >= 100.0) or (battery < 0 and self.soc_pct <= self.reserve_pct):
            battery = 0.0
        if export_limit_w is not None and self.load_w + battery < -export_limit_w:
            battery = -(self.load_w + export_limit_w)  # the battery's own feed-in, held to the limit
        grid = self.load_w - self.pv_w + battery
        self.pv_used_w = self.pv_w
        if export_limit_w is not None and grid < -export_limit_w:
            curtail = min(self.pv_w, -export_limit_w - grid)
            self.pv_used_w, grid = self.pv_w - curtail, grid + curtail
        stored = battery * self.efficiency if battery > 0 else battery / self.efficiency
        self.soc_pct = min(100.0, max(0.0, self.soc_pct + stored * dt_s / 3600 / self.capacity_wh * 100))
        return battery, grid


def daylight(now: datetime, peak_w: float = 4000.0) -> tuple[float, float]:
    """A plausible (PV W, load W) for the local time of day: the demo's weather."""
    hour = now.hour + now.minute / 60
    pv = peak_w * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 < hour < 20 else 0.0
    load = 350 + 900 * math.exp(-((hour - 7.5) ** 2) / 2) + 1400 * math.exp(-((hour - 19) ** 2) / 4)
    return pv, load


class EmulatedInverter:
    """A Modbus TCP inverter on loopback; ``await start()`` returns its port."""

    def __init__(self, *, battery: Battery | None = None, step_s: float | None = 1.0,
                 speed: float = 1.0, device_id: int = 1, loads: int = 8,
                 weather: bool = False) -> None:
        self.battery = battery or Battery()
        self.step_s, self.speed, self.device_id, self.weather = step_s, speed, device_id, weather
        self.drop_writes = False
        self.exception: int | None = None
        self.write_exception: int | None = None
        self.refuse_writes_to: set[int] = set()  # addresses whose writes get exception 3
        self.busy_writes = 0
        self.writes: list[tuple[int, int, list[int]]] = []  # (function code, address, values)
        self.reads: Counter[tuple[int, int]] = Counter()  # (function code, address) → requests
        self.host, self.port = "127.0.0.1", 0
        self._server: ModbusTcpServer | None = None
        self._internal = False
        self._model: asyncio.Task[None] | None = None
        self._holding = [0] * 20
        self._holding[SOC_TARGET] = 100
        self._holding[MAX_DISCHARGE_W] = int(self.battery.max_w)
        self._holding[EXPORT_LIMIT_W] = NO_EXPORT_LIMIT
        self.battery.pv_used_w = self.battery.pv_w
        self._coils = [False] * loads
        self._publish()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on ``host``:``port`` (0: a free port) and start the battery model."""
        self.host = host
        await self._serve(port)
        if self.step_s is not None:
            self._model = asyncio.create_task(self._run_model(), name="sim-inverter")
        return self.port

    async def stop(self) -> None:
        if self._model is not None:
            self._model.cancel()
            await asyncio.gather(self._model, return_exceptions=True)
            self._model = None
        await self.go_down()

    async def go_down(self) -> None:
        """Stop answering (connections drop, the port refuses); the registers are kept."""
        if self._server is not None:
            await self._snapshot()
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def come_back(self) -> None:
        """Serve again on the same port, with the registers as they were."""
        if self._server is None:
            await self._serve(self.port)

    async def poke(self, address: int, value: int) -> None:
        """Change a holding register behind the client's back (an installer's app, a reset)."""
        await self._set(_WRITE_HR, address, [value & 0xFFFF])

    async def register(self, address: int) -> int:
        values = await self._get(_READ_HR, address, 1)
        return int(values[0])

    async def coil(self, address: int) -> bool:
        return bool((await self._get(_READ_COILS, address, 1))[0])

    def write_count(self) -> int:
        return len(self.writes)

    # -- internals --------------------------------------------------------------------

    async def _serve(self, port: int) -> None:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        device = SimDevice(id=self.device_id, action=self._action, simdata=(
            [SimData(address=LOAD_COILS, values=list(self._coils), datatype=DataType.BITS)],
            [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(address=0, values=list(self._holding), datatype=DataType.REGISTERS)],
            [SimData(address=0, values=[0] * 4, datatype=DataType.REGISTERS)]))
        server = ModbusTcpServer(device, address=(self.host, port))
        await server.serve_forever(background=True)
        self._server = server
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _action(self, func: int, start: int, address: int, count: int,
                      current: list[int], values: Any) -> ExcCodes | None:
        if self._internal:
            return None
        if self.exception is not None:
            return ExcCodes(self.exception)
        if values is None:
            if func not in _WRITES:
                self.reads[(func, address)] += 1
            return None
        if func in _WRITES:
            if self.write_exception is not None:
                return ExcCodes(self.write_exception)
            if address in self.refuse_writes_to:
                return ExcCodes.ILLEGAL_VALUE
            if self.busy_writes > 0:
                self.busy_writes -= 1
                return ExcCodes.DEVICE_BUSY
            if self.drop_writes:
                table = _READ_COILS if func in (5, 15) else _READ_HR
                values[:] = await self._get(table, address, count)
            else:
                self.writes.append((func, address, [int(v) for v in values]))
        return None

    async def _get(self, func: int, address: int, count: int) -> list[Any]:
        if self._server is None:
            cache = self._coils if func == _READ_COILS else self._holding
            offset = LOAD_COILS if func == _READ_COILS else 0
            return cache[address - offset:address - offset + count]
        self._internal = True
        try:
            return list(await self._server.async_getValues(self.device_id, func, address, count))
        finally:
            self._internal = False

    async def _set(self, func: int, address: int, values: list[Any]) -> None:
        if self._server is None:
            cache: list[Any] = self._coils if func == _WRITE_COILS else self._holding
            offset = LOAD_COILS if func == _WRITE_COILS else 0
            cache[address - offset:address - offset + len(values)] = values
            return
        self._internal = True
        try:
            await self._server.async_setValues(self.device_id, func, address, values)
        finally:
            self._internal = False

    async def _snapshot(self) -> None:
        self._holding = [int(v) for v in await self._get(_READ_HR, 0, len(self._holding))]
        self._coils = [bool(v) for v in await self._get(_READ_COILS, LOAD_COILS, len(self._coils))]

    def _publish(self, battery_w: float = 0.0, grid_w: float = 0.0) -> list[int]:
        b = self.battery
        telemetry = [round(b.soc_pct * 10), round(battery_w), round(grid_w), round(b.pv_used_w),
                     round(b.load_w)]
        self._holding[:5] = [v & 0xFFFF for v in telemetry]
        return self._holding[:5]

    async def _run_model(self) -> None:
        assert self.step_s is not None
        while True:
            await asyncio.sleep(self.step_s)
            await self.step(self.step_s * self.speed)

    async def step(self, dt_s: float) -> None:
        """Advance the battery model by ``dt_s`` simulated seconds."""
        if self.weather:
            self.battery.pv_w, self.battery.load_w = daylight(datetime.now())
        regs = await self._get(_READ_HR, MODE, 6)
        mode, charge_w, target, max_dis, dis_w, limit = (int(v) for v in regs)
        battery_w, grid_w = self.battery.step(dt_s, mode, charge_w, target, max_dis, dis_w,
                                              None if limit == NO_EXPORT_LIMIT else limit)
        await self._set(_WRITE_HR, SOC, self._publish(battery_w, grid_w))
