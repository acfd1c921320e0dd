"""Device profiles and the [control] section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from handshake.errors import ConfigError
from pi.config import load
from pi.control import profile as profiles
from pi.control.profile import ImplausibleTelemetry, NotCommissioned, Register
from tests.helpers import pi_toml

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_profile_loads() -> None:
    assert set(profiles.shipped()) >= {"deye-sg-hp3", "deye-sg-lp1", "modbus-load", "sim-inverter",
                                      "sunspec-storage"}
    for name in profiles.shipped():
        profile = profiles.load(profiles.PROFILES_DIR / f"{name}.toml")
        assert profile.name == name
        assert set(profile.safe) == set(profile.registers)  # the safe state names every register


def test_deye_profile_follows_the_community_maps_and_says_verify() -> None:
    path = profiles.PROFILES_DIR / "deye-sg-lp1.toml"
    deye = profiles.load(path)
    assert deye.verify_on_unit
    assert "VERIFY ON YOUR UNIT" in path.read_text()
    # 0x00B8 SoC, 0x00BE battery power, 0x00A9 grid power; 0x00D3, 0x00E8, 0x00E6, 0x010C…, 0x0112…
    assert {n: r.address for n, r in deye.telemetry.items()} == {
        "soc_pct": 0xB8, "battery_w": 0xBE, "grid_w": 0xA9}
    assert deye.registers["max_discharge_a"].address == 0xD3
    assert deye.registers["grid_charge"].address == 0xE8
    assert deye.registers["grid_charge_a"].address == 0xE6
    assert [deye.registers[f"program{i}_soc"].address for i in range(1, 7)] == list(range(0x10C, 0x112))
    assert all(w.kind == "baseline" for w in deye.safe.values())
    # Deye counts discharging as positive: edgepair's battery_w is + charging.
    assert deye.decode_telemetry({"soc_pct": 60, "battery_w": 1500, "grid_w": 0xFFFF - 99}) == {
        "soc_pct": 60.0, "battery_w": -1500.0, "grid_w": -100.0}
    charge = deye.targets("charge", {"power_w": 2560, "soc_target": 90},
                          dict.fromkeys(deye.registers, 7))
    assert charge["grid_charge_a"] == 50
    assert charge["program3_soc"] == 90
    assert charge["max_discharge_a"] == 0
    assert charge["grid_charge"] == 1


def test_register_scaling_signs_and_clamps() -> None:
    reg = Register("x", 1, scale=0.1, signed=True, min=-50, max=50)
    assert reg.encode(12.34) == 123
    assert reg.encode(-1) == 0xFFFF - 9
    assert reg.decode(0xFFFF - 9) == pytest.approx(-1.0)
    assert reg.encode(80) == 500  # clamped to the register's max
    assert Register("c", 0, table="coil").encode(5) == 1
    assert Register("u", 0).encode(70000) == 0xFFFF


def test_implausible_telemetry_and_missing_baselines() -> None:
    sim = profiles.load(profiles.PROFILES_DIR / "sim-inverter.toml")
    with pytest.raises(ImplausibleTelemetry, match="soc_pct = 150"):
        sim.decode_telemetry({"soc_pct": 1500, "battery_w": 0, "grid_w": 0})
    # "keep" registers are left alone; no export cap in the slot: the baseline's (default)
    assert sim.targets("hold", {}, {}) == {"mode": 1, "export_limit_w": 65535}
    assert sim.targets(None, {}, {}) == {"mode": 0, "charge_w": 0, "soc_target": 100,
                                         "max_discharge_w": 5000, "discharge_w": 0,
                                         "export_limit_w": 65535}  # profile defaults
    deye = profiles.load(profiles.PROFILES_DIR / "deye-sg-lp1.toml")
    with pytest.raises(NotCommissioned):
        deye.targets(None, {}, {})


def write_profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(body)
    return path


GOOD = """
[profile]
name = "mine"
[telemetry.soc_pct]
address = 1
[telemetry.battery_w]
address = 2
[telemetry.grid_w]
address = 3
[registers.mode]
address = 10
[modes.normal]
mode = 0
[modes.hold]
mode = 1
[modes.charge]
mode = { from = "soc_target", factor = 2 }
[safe]
mode = "baseline"
"""


@pytest.mark.parametrize(("edit", "problem"), [
    (("[modes.hold]\nmode = 1", "[modes.hold]"), "modes.hold.mode: required"),
    (("mode = \"baseline\"", "mode = \"keep\""), "safe.mode: expected a number, \"baseline\""),
    (("[telemetry.grid_w]\naddress = 3", ""), "telemetry.grid_w: required"),
    (("address = 10", "address = 10\nadress = 3"), "did you mean 'address'"),
    (("from = \"soc_target\"", "from = \"voltage\""), "expected one of power_w, soc_target"),
    (("address = 10", "address = 70000"), "registers.mode.address: expected a value ≤ 65535"),
])
def test_profile_problems_name_file_and_key(tmp_path: Path, edit: tuple[str, str], problem: str) -> None:
    path = write_profile(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as info:
        profiles.load(path)
    assert any(problem in p and str(path) in p for p in info.value.problems), info.value.problems


def test_a_profile_by_path_relative_to_the_config(tmp_path: Path) -> None:
    write_profile(tmp_path, GOOD)
    config = load(pi_toml(tmp_path, extra='[control]\nprofile = "./mine.toml"\naddress = "127.0.0.1"\n'))
    control = config.control
    assert control.profile.name == "mine"
    assert control.profile.targets("charge", {"soc_target": 30}, {}) == {"mode": 60}


def test_control_section_defaults(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path, extra='[control]\nprofile = "deye-sg-lp1"\naddress = "192.0.2.40"\n'))
    control = config.control
    assert (control.port, control.device_id, control.tick_s, control.verify_s) == (502, 1, 5.0, 60.0)
    assert control.write_budget_per_day == 200
    assert control.limits.max_charge_w == 12000  # the profile's rating
    assert control.loads == ()


@pytest.mark.parametrize(("extra", "problem"), [
    ('profile = "huawei"', "control.profile: no profile 'huawei' (shipped: deye-sg-hp3, deye-sg-lp1"),
    ('profile = "modbus-load"', "expected kind = 'inverter' here"),
    ("max_charge_w = 20000", "control.max_charge_w: expected a value ≤ 12000"),
    ("soc_min_pct = 80\nsoc_max_pct = 60", "control.soc_min_pct: expected less than soc_max_pct"),
    ("verify_s = 1", "control.verify_s: expected at least tick_s"),
    ('address = "no such host!"', "control.address: expected an IP address or host name"),
    ("tick = 5", "did you mean 'tick_s'"),
    ('[[control.loads]]\nname = "Boiler"\naddress = "192.0.2.41"', "control.loads[0].name"),
    ('[[control.loads]]\nname = "a"\naddress = "192.0.2.41"\n[[control.loads]]\nname = "a"\n'
     'address = "192.0.2.42"', "load 'a' is defined twice"),
])
def test_control_section_problems(tmp_path: Path, extra: str, problem: str) -> None:
    lines = {"profile": 'profile = "deye-sg-lp1"', "address": 'address = "192.0.2.40"'}
    head = "\n".join(v for k, v in lines.items() if not extra.startswith(k))
    text = f"[control]\n{head}\n{extra}\n"
    with pytest.raises(ConfigError) as info:
        load(pi_toml(tmp_path, extra=text))
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_loads_override_the_generic_profile(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path, extra="""
[control]
profile = "sim-inverter"
address = "127.0.0.1"
[[control.loads]]
name = "heatpump"
address = "127.0.0.1"
port = 1502
register = 7
table = "holding"
on_value = 2
off_value = 1
"""))
    (load_cfg,) = config.control.loads
    (reg,) = load_cfg.profile.registers.values()
    assert (load_cfg.name, load_cfg.port, reg.address, reg.table) == ("heatpump", 1502, 7, "holding")
    assert load_cfg.profile.targets("on", {}, {}) == {"switch": 2}
    assert load_cfg.profile.targets("off", {}, {}) == {"switch": 1}


def test_the_api_side_stays_light() -> None:
    """pi.control.planapi (loaded by the api daemon) and the config never import pymodbus."""
    code = ("import sys, pi.control.planapi, pi.control.config, pi.control.decide; "
            "print(any(m.startswith('pymodbus') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "False"


def test_power_registers_are_capped_by_the_pis_hard_limits() -> None:
    deye = profiles.load(profiles.PROFILES_DIR / "deye-sg-lp1.toml")
    baseline = dict.fromkeys(deye.registers, 0) | {"max_discharge_a": 240}
    caps = {"max_charge_w": 2000.0, "max_discharge_w": 4000.0}
    safe = deye.targets(None, {}, baseline, caps)
    assert safe["max_discharge_a"] == 78  # 4000 W at 51.2 V, not the baseline's 240 A
    charge = deye.targets("charge", {"power_w": 3000.0, "soc_target": 80.0}, baseline, caps)
    assert charge["grid_charge_a"] == 39  # 2000 W, not the 3000 W asked for
    assert deye.targets(None, {}, baseline)["max_discharge_a"] == 240  # no caps, no change
