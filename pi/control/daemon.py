"""The control daemon (``edgepair pi run control``): tick, watch the plan, publish control.json.

It boots into the safe state (``safe_unverified`` until a first verified apply) and writes the
safe state before it exits, on SIGTERM as on any other stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from handshake import documents
from handshake.documents import ControlDocument
from handshake.errors import ConfigError, ValidationError
from handshake.util import atomic
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import utcnow
from pi.config import PiConfig
from pi.control import plan as plans
from pi.control.config import ControlConfig
from pi.control.device import Device, ModbusDevice
from pi.control.executor import Executor, WriteBudget

log = logging.getLogger(__name__)

WATCHDOG_LOOPS = ("control",)
BASELINE_FILE = "control-baseline.json"
BASELINE_SCHEMA = "edgepair.control-baseline/1"
WRITES_FILE = "control-writes.json"
# control.json is rewritten at once when something that matters changes, else this often
# (stale past documents.stale_after of this: the dashboard and pi.json say so).
PUBLISH_INTERVAL_S = 30.0
# On stop the safe state gets this long (systemd's TimeoutStopSec=30 leaves the rest).
STOP_DEADLINE_S = 15.0


async def run(config: PiConfig, *, ready: Callable[[], None] = lambda: None,
              kick: Callable[[str], None] = lambda name: None) -> None:
    """Run until cancelled; the device is left in the safe state."""
    control: ControlConfig | None = config.control
    if control is None:
        raise ConfigError([f"{config.file}: [control]: section missing (energy control is not "
                           "configured)"])
    if control.profile.verify_on_unit:
        log.warning("control: profile %s comes from community register maps: verify it on your "
                    "unit and commission it (`edgepair control commission`)", control.profile.name)
    devices = make_devices(control)
    private = config.private_dir
    executor = Executor(control, devices, baselines=load_baselines(private, control),
                        budget=WriteBudget(control.write_budget_per_day, private / WRITES_FILE,
                                           lambda: utcnow().date()),
                        kick=lambda: kick("control"))
    executor.plan = load_plan(private / plans.PLAN_FILE, control)
    changed = asyncio.Event()
    watcher = _watch(private, asyncio.get_running_loop(), changed.set)
    publisher = Publisher(config.public_dir / "control.json")
    try:
        ready()
        while True:
            kick("control")
            if changed.is_set():
                changed.clear()
                executor.plan = load_plan(private / plans.PLAN_FILE, control)
                executor.baselines = load_baselines(private, control)
            await executor.tick()
            kick("control")
            await publisher.publish(executor)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(control.tick_s):
                    await changed.wait()
    finally:
        watcher.stop()
        watcher.join()
        try:
            async with asyncio.timeout(STOP_DEADLINE_S):
                await executor.stop()
                await publisher.publish(executor, force=True)
        except (TimeoutError, OSError) as exc:
            log.error("control: could not confirm the safe state before exit: %s", exc)
        finally:
            for device in devices.values():
                await device.close()
        log.info("control: stopped in %s (%s)", executor.mode, executor.reason)


def make_devices(control: ControlConfig) -> dict[str, Device]:
    devices: dict[str, Device] = {"inverter": ModbusDevice(control.address, control.port,
                                                           control.device_id, control.timeout_s)}
    for load in control.loads:
        devices[f"load.{load.name}"] = ModbusDevice(load.address, load.port, load.device_id,
                                                    control.timeout_s)
    return devices


def load_plan(path: Path, control: ControlConfig) -> plans.Plan | None:
    """The stored plan, validated again against this daemon's config; None when absent or bad."""
    try:
        doc = atomic.read_json(path)
    except (OSError, ValueError) as exc:
        log.warning("control: stored plan %s is unreadable (%s): ignoring it", path, exc)
        return None
    if doc is None:
        return None
    try:
        plan = plans.validate(doc, control.limits, control.load_names, profile=control.profile)
    except ValidationError as exc:
        log.warning("control: stored plan %s is not valid here: %s", path, exc)
        return None
    log.info("control: plan %s (seq %d) loaded: %d slots until %s", plan.id, plan.seq,
             len(plan.slots), doc.get("valid_until"))
    return plan


def load_baselines(private: Path, control: ControlConfig | None = None) -> dict[str, dict[str, int]]:
    """The commissioned baseline per device key ("inverter", "load.NAME"); {} before commissioning.

    With ``control``: a baseline taken with another profile or from another device is
    not this device's own settings, so it is not used (commission again).
    """
    try:
        doc = atomic.read_json(private / BASELINE_FILE)
    except (OSError, ValueError) as exc:
        log.warning("control: baseline unreadable (%s): the safe state uses profile defaults", exc)
        return {}
    if not isinstance(doc, dict) or doc.get("schema") != BASELINE_SCHEMA:
        return {}
    if control is not None:
        taken = (doc.get("profile"), doc.get("device"))
        here = (control.profile.name, {"address": control.address, "port": control.port,
                                       "device_id": control.device_id})
        if taken != here:
            log.error("control: the baseline in %s was taken with profile %s from %s, not %s "
                      "from %s: it is not used; run `edgepair control commission --force`",
                      private / BASELINE_FILE, taken[0], taken[1], here[0], here[1])
            return {}
    devices = doc.get("devices", {})
    return {key: {n: int(v) for n, v in dev.get("registers", {}).items()}
            for key, dev in devices.items() if isinstance(dev, dict)}


class Publisher:
    """Writes control.json when it matters, at least every PUBLISH_INTERVAL_S."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.quiet = QuietLogger(log)
        self.last_key: Any = None
        self.last_at = 0.0

    async def publish(self, executor: Executor, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        doc = executor.document(utcnow(), PUBLISH_INTERVAL_S)
        key = (doc["mode"], doc["reason"], doc["detail"], json.dumps(doc["plan"]),
               json.dumps(doc["slot"]), json.dumps(doc["alarms"]), doc["writes_today"])
        if not force and key == self.last_key and loop.time() - self.last_at < PUBLISH_INTERVAL_S:
            return
        self.last_key, self.last_at = key, loop.time()
        await asyncio.to_thread(documents.try_publish, self.path,
                                documents.convert(doc, ControlDocument), self.quiet)


def _watch(directory: Path, loop: asyncio.AbstractEventLoop, notify: Callable[[], None]) -> Any:
    """A watchdog observer that calls ``notify`` (in the loop) when plan or baseline change."""
    names = {plans.PLAN_FILE, BASELINE_FILE}
    # Not opened/closed_no_write: reading the plan must not look like a change to it.
    kinds = {"created", "modified", "moved", "deleted", "closed"}

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in kinds:
                return
            paths = [event.src_path, getattr(event, "dest_path", "")]
            if any(os.path.basename(os.fsdecode(p)) in names for p in paths if p):
                loop.call_soon_threadsafe(notify)

    directory.mkdir(parents=True, exist_ok=True)
    observer = Observer()
    observer.daemon = True
    observer.schedule(Handler(), str(directory), recursive=False)
    observer.start()
    return observer
