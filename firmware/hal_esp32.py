# The ESP32's hardware: machine.Pin, machine.ADC, onewire + ds18x20, network (Wi-Fi).
import time

import machine

WIFI_TIMEOUT_MS = 20000
DS18B20_CONVERSION_MS = 750


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
        """The last DS18B20 reading; a new conversion runs between two calls (750 ms at
        12 bits), so reading never blocks the loop that stops the motor."""
        import ds18x20
        import onewire
        sensor = self._ds.get(pin)
        if sensor is None:
            bus = ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin)))
            roms = bus.scan()
            if not roms:
                return None
            sensor = self._ds[pin] = [bus, roms[0], None, None]  # bus, rom, started, value
        bus, rom, started, value = sensor
        now = time.ticks_ms()
        if started is not None and time.ticks_diff(now, started) >= DS18B20_CONVERSION_MS:
            try:
                value = sensor[3] = bus.read_temp(rom)
            except Exception:  # a loose wire: no reading this time, never a crash
                value = sensor[3] = None
            started = None
        if started is None:
            bus.convert_temp()
            sensor[2] = now
        return value

    def stats(self, heap):
        pass
