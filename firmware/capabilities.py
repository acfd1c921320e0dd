# What a node can do: relay, motor, input, temperature, analog; each through the HAL.
import time

# A motor never runs longer than this, whatever a job or the config asks: a blind that
# runs into its end stop for minutes burns its motor.
MOTOR_HARD_MAX_S = 120
DIRECTIONS = ("up", "down")


class CapabilityError(Exception):
    pass


class Relay:
    name = "relay"

    def __init__(self, hal, cfg):
        self.hal, self.pin = hal, cfg.get("pin", 5)
        self.default = bool(cfg.get("default", False))
        self.on = None

    def limits(self):
        return {"default": self.default}

    def safe(self):
        self.set(self.default)

    def set(self, on):
        if not self.hal.write(self.pin, on):
            raise CapabilityError("relay pin %d did not read back %d" % (self.pin, on))
        self.on = on

    async def run(self, params, job):
        on = params.get("on")
        if not isinstance(on, bool):
            raise CapabilityError("relay: expected params.on true or false")
        self.set(on)
        return {"on": on}


class Motor:
    name = "motor"

    def __init__(self, hal, cfg):
        self.hal = hal
        self.pin_up, self.pin_down = cfg.get("pin_up", 12), cfg.get("pin_down", 13)
        self.max_s = min(cfg.get("max_s", 30), MOTOR_HARD_MAX_S)
        self.started = None  # time.ticks_ms() while running
        self.direction = None

    def limits(self):
        return {"max_s": self.max_s, "directions": list(DIRECTIONS)}

    def stop(self):
        ok = self.hal.write(self.pin_up, 0) and self.hal.write(self.pin_down, 0)
        self.started, self.direction = None, None
        return ok

    def safe(self):
        self.stop()

    def enforce(self, now_ms):
        """The hard maximum, checked by the watchdog whatever the job runner does."""
        if self.started is not None and time.ticks_diff(now_ms, self.started) > self.max_s * 1000:
            self.stop()

    async def run(self, params, job):
        import asyncio
        direction, duration = params.get("direction"), params.get("duration_s")
        if direction not in DIRECTIONS:
            raise CapabilityError("motor: expected direction up or down")
        if not isinstance(duration, (int, float)) or not 0 < duration <= self.max_s:
            raise CapabilityError("motor: expected 0 < duration_s <= %s" % self.max_s)
        self.stop()  # never both pins at once
        other = self.pin_down if direction == "up" else self.pin_up
        pin = self.pin_up if direction == "up" else self.pin_down
        if not (self.hal.write(other, 0) and self.hal.write(pin, 1)):
            self.stop()
            raise CapabilityError("motor pin did not read back")
        self.started, self.direction = time.ticks_ms(), direction
        started = self.started
        end = time.ticks_add(started, int(duration * 1000))
        try:
            while time.ticks_diff(end, time.ticks_ms()) > 0:
                if self.started != started:  # stopped by the watchdog (Pi lost, hard max)
                    raise CapabilityError("motor stopped early: %s" % (job.abort or "safe state"))
                await asyncio.sleep_ms(20)
        finally:
            if self.started == started:
                self.stop()
        return {"direction": direction, "ran_s": duration}


class Sensor:
    """A reading: input (digital contact), temperature (DS18B20), analog."""

    def __init__(self, hal, kind, cfg):
        self.hal, self.name, self.pin = hal, kind, cfg.get("pin", 4)
        self.reading = cfg.get("name", kind)

    def limits(self):
        return {}

    def safe(self):
        pass

    def read(self):
        if self.name == "input":
            value = self.hal.read(self.pin)
            return None if value is None else (bool(value), None)
        if self.name == "temperature":
            value = self.hal.temperature(self.pin)
            return None if value is None else (round(value, 2), "°C")
        value = self.hal.analog(self.pin)
        return None if value is None else (value, None)

    async def run(self, params, job):
        found = self.read()
        return {"value": None if found is None else found[0]}


class Capabilities:
    def __init__(self, hal, config):
        self.all = {}
        for kind in sorted(config):
            cfg = config[kind] or {}
            if kind == "relay":
                self.all[kind] = Relay(hal, cfg)
            elif kind == "motor":
                self.all[kind] = Motor(hal, cfg)
            elif kind in ("input", "temperature", "analog"):
                self.all[kind] = Sensor(hal, kind, cfg)
            else:
                raise CapabilityError("unknown capability %r in config.json" % kind)

    def names(self):
        return sorted(self.all)

    def limits(self):
        return {name: self.all[name].limits() for name in self.all}

    def get(self, name):
        cap = self.all.get(name)
        if cap is None:
            raise CapabilityError("this node has no %s" % name)
        return cap

    def safe(self):
        """Every actuator to its safe value: motor stopped, relay to its default."""
        for cap in self.all.values():
            cap.safe()

    def enforce(self, now_ms):
        motor = self.all.get("motor")
        if motor is not None:
            motor.enforce(now_ms)

    def readings(self):
        out = {}
        for cap in self.all.values():
            if isinstance(cap, Sensor):
                found = cap.read()
                if found is not None:
                    out[cap.reading] = {"value": found[0], "unit": found[1]}
            elif isinstance(cap, Relay) and cap.on is not None:
                out["relay"] = {"value": cap.on, "unit": None}
        return out
