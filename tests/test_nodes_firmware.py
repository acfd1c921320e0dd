"""firmware/ on the real MicroPython unix port: HMAC, signatures, pairing, the motor's hard
maximum and the job runner's once-only rule (the loopback end to end is test_nodes_e2e)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest

from handshake.auth import Verifier
from pi.nodes import wire
from pi.nodes.flash import FIRMWARE_DIR
from tests.nodesite import HEAP, micropython


def run_mp(tmp_path: Path, script: str) -> list[object]:
    """Run ``script`` on MicroPython with firmware/ importable; each printed line is JSON."""
    path = tmp_path / "script.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + script)
    done = subprocess.run([micropython(), "-X", f"heapsize={HEAP}", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = []
    for line in done.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # the firmware's own log lines ("job … done")
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in FIRMWARE_DIR.glob("*.py")))
def test_every_firmware_file_compiles_on_micropython(tmp_path: Path, name: str) -> None:
    out = run_mp(tmp_path, f"compile(open({str(FIRMWARE_DIR / name)!r}).read(), {name!r}, 'exec')\n"
                           "print('\"ok\"')\n")
    assert out == ["ok"]


def test_hmac_sha256_and_signatures_match_the_handshake(tmp_path: Path) -> None:
    keys = [b"", b"k", bytes(range(32)), bytes(64), bytes(range(65)), b"x" * 100]
    messages = [b"", b"abc", bytes(range(256)) * 3]
    out = run_mp(tmp_path, f"""
import json, transport, binascii
for key in {keys!r}:
    for msg in {messages!r}:
        print(json.dumps(transport.hexlify(transport.hmac_sha256(key, msg))))
print(json.dumps(transport.authorization(bytes(range(32)), "POST", "/api/v1/nodes/n-1/poll",
                                         b'{{"running": []}}', 1800000000)))
""")
    expected = [hmac.new(k, m, hashlib.sha256).hexdigest() for k in keys for m in messages]
    assert out[:-1] == expected
    header = out[-1]
    assert isinstance(header, str)
    Verifier(bytes(range(32)), clock=lambda: 1800000005).verify(
        header, "POST", "/api/v1/nodes/n-1/poll", b'{"running": []}')


def test_pairing_proof_and_key_unwrap_match_the_pi(tmp_path: Path) -> None:
    key = bytes(range(100, 132))
    wrapped = wire.wrap(key, "ABCD2345", "node-1")
    out = run_mp(tmp_path, f"""
import json, pairing, transport
print(json.dumps(pairing.proof("ABCD2345", "node-1")))
print(json.dumps(transport.hexlify(pairing.unwrap("ABCD2345", "node-1", {wrapped!r}))))
print(json.dumps(transport.hexlify(pairing.unwrap("WRONG234", "node-1", {wrapped!r}))))
""")
    assert out[0] == wire.proof("ABCD2345", "node-1")
    assert out[1] == key.hex()
    assert out[2] != key.hex()


def test_the_motor_never_runs_past_its_hard_maximum(tmp_path: Path) -> None:
    out = run_mp(tmp_path, """
import json, time, asyncio, capabilities, hal_sim
hal = hal_sim.Hal({"sim": {"state": "state.json"}})
caps = capabilities.Capabilities(hal, {"motor": {"max_s": 500}, "relay": {"default": True}})
motor = caps.get("motor")
print(json.dumps(caps.limits()))
class Job:
    abort = None
for params in ({"direction": "up", "duration_s": 121}, {"direction": "sideways", "duration_s": 1}):
    try:
        asyncio.run(motor.run(params, Job()))
    except capabilities.CapabilityError as exc:
        print(json.dumps(str(exc)))
async def running():
    task = asyncio.create_task(motor.run({"direction": "down", "duration_s": 100}, Job()))
    await asyncio.sleep_ms(50)
    print(json.dumps(hal.pins))
    motor.started = time.ticks_add(time.ticks_ms(), -121000)  # as if it ran 121 s
    caps.enforce(time.ticks_ms())
    print(json.dumps(hal.pins))
    try:
        await task
    except capabilities.CapabilityError as exc:
        print(json.dumps(str(exc)))
asyncio.run(running())
caps.safe()
print(json.dumps(hal.pins))
""")
    limits, too_long, sideways, running, stopped, early, safe = out
    assert limits == {"motor": {"max_s": 120, "directions": ["up", "down"]},
                      "relay": {"default": True}}
    assert "duration_s <= 120" in str(too_long)
    assert "direction up or down" in str(sideways)
    assert running == {"12": 0, "13": 1}
    assert stopped == {"12": 0, "13": 0}
    assert "stopped early" in str(early)
    assert safe == {"12": 0, "13": 0, "5": 1}  # the relay at its configured default


def test_a_job_id_seen_before_never_runs_again_even_after_a_reboot(tmp_path: Path) -> None:
    (tmp_path / "done.json").write_text(json.dumps({"mid@1": {"status": "started", "n": 1}}))
    out = run_mp(tmp_path, """
import json, asyncio, capabilities, hal_sim, jobs
hal = hal_sim.Hal({"sim": {"state": "state.json"}})
caps = capabilities.Capabilities(hal, {"relay": {}})
runner = jobs.Runner(caps)
tasks = []
def spawn(coro):
    tasks.append(coro)
items = [{"id": "mid@1", "capability": "relay", "params": {"on": True}},
         {"id": "new@2", "capability": "relay", "params": {"on": True}}]
runner.accept(items, spawn)
for coro in tasks:
    asyncio.run(coro)
runner.accept(items, spawn)  # delivered again: reported again, not run
print(json.dumps([len(tasks), hal.events and len(hal.events)]))
print(json.dumps(runner.results()))
runner.acked(["mid@1", "new@2"])
print(json.dumps(runner.results()))
""")
    counts, results, after_ack = out
    assert counts == [1, 1]  # only new@2 ran; one pin write
    assert results == [
        {"id": "mid@1", "status": "failed", "result": {"error": "interrupted by a restart of the node"}},
        {"id": "new@2", "status": "done", "result": {"on": True}}]
    assert after_ack == []
    assert json.loads((tmp_path / "done.json").read_text())["new@2"]["acked"] is True


# machine, onewire, ds18x20 and network as the ESP32 port has them (the calls hal_esp32
# makes), shadowing the unix port's own machine module.
FAKE_ESP32 = {
    "machine.py": """
pins = {}
class Pin:
    OUT, IN, PULL_UP = 1, 0, 2
    def __init__(self, n, mode=None, pull=None):
        self.n = n
    def value(self, v=None):
        if v is None:
            return pins.get(self.n, 1)
        pins[self.n] = v
class ADC:
    ATTN_11DB = 3
    def __init__(self, pin):
        self.pin = pin
    def atten(self, a):
        pass
    def read_u16(self):
        return 40000
""",
    "onewire.py": "class OneWire:\n    def __init__(self, pin):\n        self.pin = pin\n",
    "ds18x20.py": """
conversions = []
class DS18X20:
    def __init__(self, bus):
        pass
    def scan(self):
        return [b"rom"]
    def convert_temp(self):
        conversions.append(1)
    def read_temp(self, rom):
        return 21.4375
""",
    "network.py": """
STA_IF = 0
class WLAN:
    def __init__(self, i):
        self.up = False
    def active(self, on):
        pass
    def isconnected(self):
        return self.up
    def connect(self, ssid, password):
        self.up = ssid == "home"
""",
}


def test_the_esp32_hal_drives_pins_reads_sensors_and_never_blocks_on_a_ds18b20(
        tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for name, text in FAKE_ESP32.items():
        (fakes / name).write_text(text)
    out = run_mp(tmp_path, f"""
sys.path.insert(0, {str(fakes)!r})
import json, time, hal_esp32, machine, ds18x20, capabilities
hal = hal_esp32.Hal({{"wifi": {{"ssid": "home", "password": "x"}}}})
print(json.dumps(hal.connect()))
caps = capabilities.Capabilities(hal, {{"relay": {{"pin": 5, "default": True}},
                                       "temperature": {{"pin": 4}}, "analog": {{"pin": 34}},
                                       "input": {{"pin": 14, "name": "door"}}}})
caps.safe()
print(json.dumps(machine.pins))
t0 = time.ticks_ms()
first = caps.readings()
print(json.dumps([time.ticks_diff(time.ticks_ms(), t0) < 100, first.get("temperature")]))
time.sleep_ms(800)
print(json.dumps(caps.readings()))
print(json.dumps(len(ds18x20.conversions)))
print(json.dumps(hal_esp32.Hal({{"wifi": {{"ssid": "other"}}}}).connect(False)))
""")
    connected, pins, first, readings, conversions, other = out
    assert connected is True
    assert pins == {"5": 1}
    assert first == [True, None]  # the first conversion runs, nothing waits for it
    assert readings == {"temperature": {"value": 21.44, "unit": "°C"},
                        "analog": {"value": 40000, "unit": None},
                        "door": {"value": True, "unit": None},
                        "relay": {"value": True, "unit": None}}
    assert conversions == 2
    assert other is False
