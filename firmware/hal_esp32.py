# The ESP32's hardware: machine.Pin, machine.ADC, onewire + ds18x20, network (Wi-Fi).
import time

import machine

WIFI_TIMEOUT_MS = 20000


class Hal:
    name = "esp32"

    def __init__(self, config):
        self.config = config
        self._out = {}
        self._ds = {}

    def connect(self, wait=True):
        """Join the Wi-Fi; ``wait=False`` (a retry while running) never blocks the loop."""
        import network
        wifi = self.config.get("wifi") or {}
        sta = network.WLAN(network.STA_IF)
        sta.active(True)
        if sta.isconnected():
            return True
        sta.connect(wifi.get("ssid", ""), wifi.get("password", ""))
        start = time.ticks_ms()
        while wait and not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > WIFI_TIMEOUT_MS:
                return False
            time.sleep_ms(200)
        return sta.isconnected()

    def write(self, pin, value):
        out = self._out.get(pin)
        if out is None:
            out = self._out[pin] = machine.Pin(pin, machine.Pin.OUT)
        out.value(1 if value else 0)
        return out.value() == (1 if value else 0)  # read back

    def read(self, pin):
        return machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP).value()

    def analog(self, pin):
        adc = machine.ADC(machine.Pin(pin))
        adc.atten(machine.ADC.ATTN_11DB)
        return adc.read_u16()

    def temperature(self, pin):
        import ds18x20
        import onewire
        sensor = self._ds.get(pin)
        if sensor is None:
            bus = ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin)))
            roms = bus.scan()
            if not roms:
                return None
            sensor = self._ds[pin] = (bus, roms[0])
        bus, rom = sensor
        bus.convert_temp()
        time.sleep_ms(750)  # DS18B20 12-bit conversion time
        return bus.read_temp(rom)

    def stats(self, heap):
        pass
