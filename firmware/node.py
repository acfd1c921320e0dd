# The node's life: safe state, Wi-Fi, pairing, then poll for jobs and report readings.
import asyncio
import gc
import json
import time

import capabilities
import hal as hal_module
import jobs
import pairing
import transport

FIRMWARE = "edgepair-node/0.1.0"
# Backoff between failed attempts to reach the Pi, capped: a Pi that reboots is found
# again within this.
MAX_BACKOFF_S = 30
WATCHDOG_MS = 100
# Failed polls in a row before the Wi-Fi is asked to join again (it reconnects by itself
# after most drops).
WIFI_RETRY_EVERY = 5


class Node:
    def __init__(self, config, hal):
        self.config = config
        self.hal = hal
        self.caps = capabilities.Capabilities(hal, config.get("capabilities") or {})
        self.link = transport.Link(config["pi_url"], config["hwid"])
        self.finished = asyncio.Event()
        self.runner = jobs.Runner(self.caps, finished=self.finished)
        self.poll_s = config.get("poll_s", 2)
        self.report_s = config.get("report_s", 30)
        # No good answer from the Pi for this long: every actuator to its safe value.
        self.lost_after_s = config.get("lost_after_s", 10)
        self.lost = True
        self.tasks = []
        self.last_readings = None
        self.last_report = None
        self.heap_peak = 0
        self.live_peak = 0

    def spawn(self, coro):
        task = asyncio.create_task(coro)
        self.tasks = [t for t in self.tasks if not t.done()]
        self.tasks.append(task)

    async def watchdog(self):
        """Stops the motor at its hard maximum and makes everything safe when the Pi is lost."""
        beat = 0
        while True:
            now = time.ticks_ms()
            self.caps.enforce(now)
            last = self.link.last_ok
            lost = last is None or time.ticks_diff(now, last) > self.lost_after_s * 1000
            if lost and not self.lost:
                print("lost the Pi: safe state")
                self.runner.abort_all("lost the Pi")
                self.caps.safe()
            self.lost = lost
            beat += 1
            if beat % 50 == 0:
                self.hal.stats(self.heap_stats())
            await asyncio.sleep_ms(WATCHDOG_MS)

    async def pair(self):
        """hello until a person approved this node with its pairing code; then its key."""
        body = pairing.hello_body(self.config, self.caps, FIRMWARE)
        failures = 0
        while True:
            try:
                answer = await self.link.hello(body)
                failures = 0
                key = pairing.accept(answer, self.config)
                if key is not None:
                    pairing.save_key(key)
                    print("paired")
                    return key
                wait = answer.get("poll_s", self.poll_s)
            except transport.Refused as exc:
                wait = retry_after(exc, self.poll_s)
            except transport.Error as exc:
                failures += 1
                wait = min(2 ** failures, MAX_BACKOFF_S)
                print("hello failed:", exc)
                if failures % WIFI_RETRY_EVERY == 0:
                    self.hal.connect(False)
            await asyncio.sleep(wait)

    async def cycle(self):
        """One poll (jobs in), and a report when there are results or readings are due."""
        self.finished.clear()  # set again by a job finishing from here on: see pause()
        answer = await self.link.call("poll", {"running": list(self.runner.running)})
        self.poll_s = answer.get("poll_s", self.poll_s)
        self.runner.accept(answer.get("jobs") or [], self.spawn)
        readings = self.caps.readings()
        due = (self.last_report is None or readings != self.last_readings
               or time.ticks_diff(time.ticks_ms(), self.last_report) > self.report_s * 1000)
        results = self.runner.results()
        if results or due:
            ack = await self.link.call("report", {"readings": readings, "results": results})
            self.runner.acked(ack.get("ack") or [])
            self.last_readings, self.last_report = readings, time.ticks_ms()

    async def run(self):
        self.caps.safe()
        self.spawn(self.watchdog())
        if not self.hal.connect():
            print("no Wi-Fi; retrying")
        self.link.key = pairing.load_key()
        failures = 0
        while True:
            if self.link.key is None:
                self.link.key = await self.pair()
            try:
                await self.cycle()
                failures = 0
                wait = self.poll_s
            except transport.Refused as exc:
                if exc.status == 401:
                    print("refused (401): pairing again", exc.body)
                    if self.link.key is not None and "signed before" not in str(exc.body):
                        pairing.forget()
                        self.link.key = None
                wait = retry_after(exc, self.poll_s)
            except transport.Error as exc:
                failures += 1
                wait = min(self.poll_s * failures, MAX_BACKOFF_S)
                if failures == 1:
                    print("cannot reach the Pi:", exc)
                if failures % WIFI_RETRY_EVERY == 0:
                    self.hal.connect(False)
            self.heap_peak = max(self.heap_peak, gc.mem_alloc())  # a cycle's garbage included
            gc.collect()
            await self.pause(wait)

    async def pause(self, seconds):
        """Until the next poll, or sooner when a job finished: its result goes out at once."""
        try:
            await asyncio.wait_for(self.finished.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def heap_stats(self):
        import micropython
        gc.collect()
        alloc = gc.mem_alloc()
        self.live_peak = max(self.live_peak, alloc)
        out = {"alloc": alloc, "free": gc.mem_free(), "live_peak": self.live_peak,
               "cycle_peak": self.heap_peak}
        if hasattr(micropython, "mem_peak"):
            out["mem_peak"] = micropython.mem_peak()
        return out


def retry_after(exc, default):
    error = (exc.body or {}).get("error") or {}
    return error.get("retry_after_s", default) if isinstance(error, dict) else default


def main(path="config.json"):
    with open(path) as f:
        config = json.load(f)
    hal = hal_module.pick(config)
    node = Node(config, hal)
    print("edgepair node", config["hwid"], "on", hal.name, FIRMWARE)
    try:
        asyncio.run(node.run())
    finally:
        node.caps.safe()
