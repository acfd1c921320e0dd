"""An emulated Deye SUN-20K-SG01HP3 (three-phase HV hybrid): a pymodbus server with its register map.

The addresses are the community maps' (davidrapan/ha-solarman deye_p3.yaml, kellerza/sunsynk
three_phase_hv.py), written here on their own (not read from the profile TOML), so a wrong
address on either side shows in the tests. Holding registers 0-799; the settings start as a
plausible installer's configuration (zero export to CT, solar sell on, 50 A limits, no grid
charging, time-of-use programs at 20 %). Telemetry is set by :meth:`telemetry`; there is no
battery model (the emulated hybrid in pi/sim/inverter.py has one).
"""

from __future__ import annotations

from pi.sim.registermap import RegisterMapDevice

DEVICE_TYPE = 0          # 0x0000: 6 = HV three-phase hybrid
SOC, BATTERY_W, GRID_W = 588, 590, 625   # 0x024C %, 0x024E signed ×10 W (+ discharge), 0x0271 signed W
MAX_CHARGE_A, MAX_DISCHARGE_A = 108, 109  # 0x006C, 0x006D
GRID_CHARGE_A, GRID_CHARGE = 128, 130     # 0x0080, 0x0082
WORK_MODE, MAX_SELL, SOLAR_SELL = 142, 143, 145  # 0x008E, 0x008F (×10 W), 0x0091
PROGRAM_SOC, PROGRAM_CHARGE = 166, 172    # 0x00A6-0x00AB, 0x00AC-0x00B1
HV_HYBRID = 6

FACTORY = {DEVICE_TYPE: HV_HYBRID, MAX_CHARGE_A: 50, MAX_DISCHARGE_A: 50, GRID_CHARGE_A: 20,
           GRID_CHARGE: 0, WORK_MODE: 2, MAX_SELL: 1200, SOLAR_SELL: 1,
           **{PROGRAM_SOC + i: 20 for i in range(6)},
           **{PROGRAM_CHARGE + i: 0 for i in range(6)}}


class DeyeHP3(RegisterMapDevice):
    """``device_type``: what register 0 says (3 = a single-phase hybrid: the wrong device)."""

    def __init__(self, *, device_type: int = HV_HYBRID, device_id: int = 1) -> None:
        super().__init__({**FACTORY, DEVICE_TYPE: device_type}, base=0, size=800,
                         device_id=device_id)

    async def telemetry(self, *, soc_pct: int, battery_w: float, grid_w: float) -> None:
        """What the inverter measures; battery_w + discharging (Deye's sign), in 10 W steps."""
        await self.set(SOC, [soc_pct])
        await self.set(BATTERY_W, [round(battery_w / 10)])
        await self.set(GRID_W, [round(grid_w)])
