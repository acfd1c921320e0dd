"""An emulated SunSpec storage inverter: a real pymodbus server serving a SunSpec model chain.

"SunS" at 40000, then the common model (1), a three-phase inverter (103, integer + scale
factors, or 113, float32), optionally models edgepair does not know (skipped by their
length), basic storage controls (124) and a wye meter (203), then the end marker. The
layout is written here from the SunSpec model definitions on its own (not from
pi.control.sunspec_models), so a wrong offset on either side shows in the tests.

:meth:`step` is the inverter's own control loop, with the storage semantics common SunSpec
storage inverters document for model 124 (e.g. Fronius' "Modbus TCP & RTU" storage control
note): StorCtl_Mod bit 0 makes InWRte (percent of WChaMax) the charge limit, bit 1 makes
OutWRte the discharge limit; a negative limit forces the opposite direction (OutWRte = -40 %
charges at ≥ 40 %); ChaGriSet 0 charges from PV only; the battery stops at MinRsvPct.
Telemetry: ChaState (SoC), 103/113 DCW (+ = the battery discharging into the inverter) and
the meter's W (+ = import).

Wrong-device switches: ``marker`` (False: no "SunS"), ``first_model`` (the model id placed
where the common model belongs), ``storage`` (False: no model 124), ``storage_length``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pi.sim.registermap import RegisterMapDevice

BASE = 40000
NOT_IMPLEMENTED = 0xFFFF

# Point offsets within each model's body (after the ID and L registers).
COMMON_LEN, COMMON = 66, {"Mn": 0, "Md": 16, "SN": 48}
INV103_LEN, INV103 = 50, {"W": 12, "W_SF": 13, "DCW": 29, "DCW_SF": 30, "St": 37}
INV113_LEN, INV113 = 60, {"W": 20, "DCW": 36, "St": 46}  # float32 pairs
STORAGE_LEN = 24
STORAGE = {"WChaMax": 0, "StorCtl_Mod": 3, "MinRsvPct": 5, "ChaState": 6, "ChaSt": 9,
           "OutWRte": 10, "InWRte": 11, "InOutWRte_RvrtTms": 13, "ChaGriSet": 15,
           "WChaMax_SF": 16, "MinRsvPct_SF": 19, "ChaState_SF": 20, "InOutWRte_SF": 23}
METER_LEN, METER = 105, {"W": 16, "W_SF": 20}
UNKNOWN_ID, UNKNOWN_LEN = 64999, 7  # a vendor model edgepair skips

# The emulated device's scale factors: 10^sf (negative ones make decimals).
SF = {"WChaMax_SF": 0, "MinRsvPct_SF": -2, "ChaState_SF": -1, "InOutWRte_SF": -2,
      "DCW_SF": 1, "W_SF": 1}


@dataclass(slots=True)
class Household:
    soc_pct: float = 50.0
    capacity_wh: float = 10_000.0
    pv_w: float = 0.0
    load_w: float = 500.0


def _sf(value: int) -> int:
    return value & 0xFFFF


def _text(text: str, words: int) -> list[int]:
    raw = text.encode("ascii")[:2 * words].ljust(2 * words, b"\0")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]


def _float(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]


class SunSpecStorage(RegisterMapDevice):
    """A SunSpec storage inverter with model 124; ``await start()`` returns the port."""

    def __init__(self, *, inverter_model: int = 103, meter: bool = True, marker: bool = True,
                 first_model: int = 1, storage: bool = True, storage_length: int = STORAGE_LEN,
                 unknown_model: bool = True, w_cha_max: int = 5000,
                 household: Household | None = None, device_id: int = 1) -> None:
        self.household = household or Household()
        self.inverter_model, self.w_cha_max = inverter_model, w_cha_max
        self.at: dict[int, int] = {}  # model id → address of its ID register
        values: dict[int, int] = {}
        address = BASE
        for i, w in enumerate(_text("SunS", 2) if marker else _text("ABCD", 2)):
            values[address + i] = w
        address += 2
        chain: list[tuple[int, int, dict[int, int]]] = [(first_model, COMMON_LEN, self._common())]
        if inverter_model == 113:
            chain.append((113, INV113_LEN, {}))
        else:
            chain.append((103, INV103_LEN, {INV103["W_SF"]: _sf(SF["W_SF"]),
                                            INV103["DCW_SF"]: _sf(SF["DCW_SF"]),
                                            INV103["St"]: 4}))
        if unknown_model:
            chain.append((UNKNOWN_ID, UNKNOWN_LEN, {}))
        if storage:
            chain.append((124, storage_length, self._storage()))
        if meter:
            chain.append((203, METER_LEN, {METER["W_SF"]: _sf(SF["W_SF"])}))
        for model_id, length, body in chain:
            self.at[model_id] = address
            values[address], values[address + 1] = model_id, length
            for offset in range(length):
                values[address + 2 + offset] = body.get(offset, 0)
            address += 2 + length
        values[address], values[address + 1] = 0xFFFF, 0
        super().__init__(values, base=BASE, size=address + 2 - BASE, device_id=device_id)

    def _common(self) -> dict[int, int]:
        body: dict[int, int] = {}
        for name, text in (("Mn", "edgepair"), ("Md", "SunSpec storage sim"), ("SN", "SIM-0001")):
            for i, w in enumerate(_text(text, 16)):
                body[COMMON[name] + i] = w
        return body

    def _storage(self) -> dict[int, int]:
        s = STORAGE
        return {s["WChaMax"]: self.w_cha_max, s["StorCtl_Mod"]: 0, s["MinRsvPct"]: 1000,
                s["ChaState"]: round(self.household.soc_pct * 10), s["ChaSt"]: 4,
                s["OutWRte"]: 10000, s["InWRte"]: 10000, s["InOutWRte_RvrtTms"]: 0,
                s["ChaGriSet"]: 0, s["WChaMax_SF"]: _sf(SF["WChaMax_SF"]),
                s["MinRsvPct_SF"]: _sf(SF["MinRsvPct_SF"]),
                s["ChaState_SF"]: _sf(SF["ChaState_SF"]),
                s["InOutWRte_SF"]: _sf(SF["InOutWRte_SF"])}

    def point(self, model: int, offset: int) -> int:
        """The address of a point (``offset`` in the model's body)."""
        return self.at[model] + 2 + offset

    async def storage(self, name: str) -> int:
        """A model 124 point, raw."""
        return (await self.get(self.point(124, STORAGE[name])))[0]

    async def step(self, dt_s: float) -> float:
        """Run the inverter's control loop for ``dt_s`` seconds; the battery W (+ charging)."""
        h = self.household
        regs = await self.get(self.point(124, 0), STORAGE_LEN)
        ctl, grid_ok = regs[STORAGE["StorCtl_Mod"]], regs[STORAGE["ChaGriSet"]] == 1
        pct = 10.0 ** SF["InOutWRte_SF"] / 100 * self.w_cha_max

        def signed(raw: int) -> int:
            return raw - 0x10000 if raw >= 0x8000 else raw

        hi = signed(regs[STORAGE["InWRte"]]) * pct if ctl & 1 else float(self.w_cha_max)
        lo = -signed(regs[STORAGE["OutWRte"]]) * pct if ctl & 2 else -float(self.w_cha_max)
        battery = min(max(h.pv_w - h.load_w, lo), hi) if lo <= hi else hi
        if battery > 0 and not grid_ok:
            battery = min(battery, max(h.pv_w - h.load_w, 0.0))  # PV only
        reserve = regs[STORAGE["MinRsvPct"]] * 10.0 ** SF["MinRsvPct_SF"]
        if (battery > 0 and h.soc_pct >= 100.0) or (battery < 0 and h.soc_pct <= reserve):
            battery = 0.0
        h.soc_pct = min(100.0, max(0.0, h.soc_pct + battery * dt_s / 3600 / h.capacity_wh * 100))
        grid = h.load_w - h.pv_w + battery
        await self.set(self.point(124, STORAGE["ChaState"]), [round(h.soc_pct * 10)])
        if self.inverter_model == 113:
            await self.set(self.point(113, INV113["DCW"]), _float(-battery))
        else:
            await self.set(self.point(103, INV103["DCW"]), [round(-battery / 10) & 0xFFFF])
        if 203 in self.at:
            await self.set(self.point(203, METER["W"]), [round(grid / 10) & 0xFFFF])
        return battery
