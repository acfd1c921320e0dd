# The simulated hardware for the unix port: pins written go to a JSON state file (tests
# read it), readings come from a JSON inputs file (tests write it).
import json
import os
import time

MAX_EVENTS = 200


class Hal:
    name = "sim"

    def __init__(self, config):
        sim = config.get("sim") or {}
        self.state_path = sim.get("state", "sim-state.json")
        self.inputs_path = sim.get("inputs", "sim-inputs.json")
        self.pins = {}
        self.events = []
        self.heap = {}

    def connect(self, wait=True):
        return True

    def write(self, pin, value):
        value = 1 if value else 0
        if self.pins.get(str(pin)) != value:
            self.pins[str(pin)] = value
            self.events.append([time.time(), pin, value])
            if len(self.events) > MAX_EVENTS:
                self.events.pop(0)
            self._save()
        return self.pins[str(pin)] == value  # read back

    def _inputs(self):
        try:
            with open(self.inputs_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def read(self, pin):
        return (self._inputs().get("pins") or {}).get(str(pin))

    def analog(self, pin):
        return (self._inputs().get("adc") or {}).get(str(pin))

    def temperature(self, pin):
        return (self._inputs().get("onewire") or {}).get(str(pin))

    def stats(self, heap):
        self.heap = heap
        self._save()

    def _save(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pins": self.pins, "events": self.events, "heap": self.heap}, f)
        os.rename(tmp, self.state_path)
