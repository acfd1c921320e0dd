"""``edgepair control commission|profiles``: take the baseline the safe state restores."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import msgspec

from handshake import documents
from handshake.documents import ControlDocument, DocumentError
from handshake.errors import ConfigError, EdgepairError
from handshake.util import atomic
from handshake.util.cliexit import EXIT_FAILED, EXIT_OK, report
from handshake.util.timeutil import iso, utcnow
from pi import config as pi_config
from pi.control import probe
from pi.control import profile as profiles
from pi.control.config import ControlConfig
from pi.control.daemon import BASELINE_FILE, BASELINE_SCHEMA, make_devices
from pi.control.executor import control_registers


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "profiles":
        for name in profiles.shipped():
            p = profiles.load(profiles.PROFILES_DIR / f"{name}.toml")
            note = " (verify on your unit)" if p.verify_on_unit else ""
            print(f"{name:16} {p.kind:9} {p.description}{note}")
        return EXIT_OK
    try:
        config = pi_config.load(args.config)
        control: ControlConfig | None = config.control
        if control is None:
            raise ConfigError([f"{args.config}: [control]: section missing"])
        return commission(control, config.private_dir, config.public_dir, force=args.force)
    except EdgepairError as exc:
        return report(exc)


def _holds_own_settings(status: ControlDocument) -> bool:
    """Whether control.json vouches that edgepair left nothing of a plan on the device:
    a verified safe state, or never having written (it waits for this very baseline)."""
    return status.mode == "safe" or status.reason == "not_commissioned"


def commission(control: ControlConfig, private: Path, public: Path, *, force: bool) -> int:
    """Read every register the profiles write and save them as the baseline."""
    path = private / BASELINE_FILE
    existing = atomic.read_json(path) if path.exists() else None
    if existing is not None and not force:
        print(f"edgepair: a baseline was taken at {existing.get('taken_at')} ({path}); the safe "
              "state restores it. Replace it with --force.", file=sys.stderr)
        return EXIT_FAILED
    try:
        status = documents.read(public / documents.FILES[ControlDocument], ControlDocument)
    except DocumentError as exc:  # it cannot vouch for the device's registers
        if not force:
            print(f"edgepair: {exc}: cannot tell whether the device holds plan values; "
                  "pass --force to take the baseline anyway.", file=sys.stderr)
            return EXIT_FAILED
        status = None
    if status is not None and not _holds_own_settings(status) and not force:
        print(f"edgepair: the control daemon reports mode {status.mode!r} "
              f"({status.reason}), so the device may hold plan values, not your own "
              "settings. Stop edgepair-pi-control (it leaves the safe state) and run this "
              "again once control.json says safe, or pass --force.", file=sys.stderr)
        return EXIT_FAILED
    control, devices = asyncio.run(_read_all(control))
    document = {"schema": BASELINE_SCHEMA, "taken_at": iso(utcnow()), "profile": control.profile.name,
                "device": {"address": control.address, "port": control.port,
                           "device_id": control.device_id},
                "devices": devices}
    if control.profile.device:
        document["identity"] = control.profile.device
        print(f"SunSpec device: {control.profile.device}; models "
              + ", ".join(f"{m} at {a}" for m, a in control.profile.models.items()))
    atomic.write_json(path, document, 0o640)
    registers = control_registers(control)
    print(f"baseline of {len(registers)} register(s) saved to {path}:")
    for key, dev in devices.items():
        for name, raw in dev["registers"].items():
            full = name if key == "inverter" else f"{key}.{name}"
            reg = registers[full][1]
            print(f"  {full:28} {reg.table:7} {reg.address:5}  raw {raw:5}  = {reg.decode(raw):g}")
    if control.profile.verify_on_unit:
        print(f"profile {control.profile.name} comes from community register maps: verify these "
              "values against the inverter's own display before the first plan.")
    return EXIT_OK


async def _read_all(control: ControlConfig) -> tuple[ControlConfig, dict[str, Any]]:
    """The config with its profile probed on the device (identified, SunSpec points found),
    and every register it writes, raw, per device key."""
    devices = make_devices(control)
    out: dict[str, Any] = {}
    try:
        found = await probe.probe(control.profile, devices["inverter"])
        control = msgspec.structs.replace(control, device_profile=found)
        registers = control_registers(control)
        for key, device in devices.items():
            regs = [(name, reg) for name, (k, reg) in registers.items() if k == key]
            values = await device.read([reg for _, reg in regs])
            out[key] = {"registers": {reg.name: values[reg.name] for _, reg in regs}}
    finally:
        for device in devices.values():
            await device.close()
    return control, out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair control", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser("commission", help="read every register the profile writes and save it "
                       "as the baseline the safe state restores")
    c.add_argument("--config", type=Path, required=True, metavar="FILE")
    c.add_argument("--force", action="store_true",
                   help="replace an existing baseline / commission while following a plan")
    sub.add_parser("profiles", help="list the shipped device profiles")
    return parser
