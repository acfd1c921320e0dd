"""SunSpec discovery: walk the model chain from the "SunS" marker and resolve a profile's points.

A SunSpec device announces its register map itself: "SunS" at the base address (40000, or
50000, or 0), then models one after the other, each an ID and a length L, until ID 0xFFFF.
Where model 124 sits depends on which models come before it, and every value's scale is a
scale factor register (10^sf) the device chooses, so neither is in the profile: :func:`discover`
reads them from the device and returns the profile with concrete addresses and scales.

Checks (each a WrongDevice naming what was found): the marker, the common model (1) first,
each needed model present (the first of a register's alternatives: 103 or 113), its length
the one the standard gives, and every needed scale factor implemented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from pi.control import sunspec_models as sm
from pi.control.device import Device, DeviceError
from pi.control.profile import Profile, Register, WrongDevice

# A real chain has a handful of models; past this many the walk is lost.
MAX_MODELS = 64
# A scale factor outside this is no scale factor (the standard allows -10…10).
SF_RANGE = 10
# Modbus exception 2: the address does not exist (no map at this base; the chain's end).
ILLEGAL_ADDRESS = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    id: int
    address: int  # of the ID register
    length: int


async def discover(profile: Profile, device: Device) -> Profile:
    """``profile`` with every point at its address and scale on this device.

    WrongDevice when the device is not SunSpec or lacks what the profile needs; DeviceError
    (temporary) when it does not answer.
    """
    base = await find_marker(device, profile.sunspec_bases)
    chain = await walk(device, base)
    where: dict[int, Link] = {}
    for link in chain:
        where.setdefault(link.id, link)
    regs = [*profile.telemetry.values(), *profile.registers.values()]
    used = {_pick(reg, where).id for reg in regs} | {sm.COMMON}
    for model_id in sorted(used):
        link = where[model_id]
        if link.length not in sm.MODELS[model_id].lengths:
            raise WrongDevice(f"SunSpec model {sm.describe(model_id)} at {link.address} "
                              f"announces length {link.length}, expected "
                              f"{' or '.join(map(str, sm.MODELS[model_id].lengths))}")
    bodies = {m: await _words(device, where[m].address + 2, where[m].length) for m in sorted(used)}
    telemetry = {n: _resolve(r, where, bodies) for n, r in profile.telemetry.items()}
    registers = {n: _resolve(r, where, bodies) for n, r in profile.registers.items()}
    common = bodies[sm.COMMON]
    who = " ".join(_text(common, sm.MODELS[sm.COMMON].points[p]) for p in ("Mn", "Md"))
    serial = _text(common, sm.MODELS[sm.COMMON].points["SN"])
    device_name = f"{who.strip() or 'unnamed device'}{f' (SN {serial})' if serial else ''}"
    return profile.resolved(telemetry, registers, device_name,
                            {link.id: link.address for link in where.values()})


async def find_marker(device: Device, bases: Sequence[int]) -> int:
    """The first base address holding "SunS"; WrongDevice when none does."""
    seen = []
    for base in bases:
        try:
            words = await _words(device, base, 2)
        except DeviceError as exc:
            if exc.code is None:
                raise  # silent: the device is down, not wrong
            seen.append(f"{base}: Modbus exception {exc.code}")
            continue
        if tuple(words) == sm.MARKER:
            return base
        seen.append(f"{base}: {_ascii(words)!r}")
    raise WrongDevice("no SunSpec marker \"SunS\" at " + ", ".join(seen) +
                      ": not a SunSpec device, or another unit id")


async def walk(device: Device, base: int) -> list[Link]:
    """The model chain after the marker (the common model must come first)."""
    chain: list[Link] = []
    address = base + 2
    for _ in range(MAX_MODELS):
        try:
            model_id, length = await _words(device, address, 2)
        except DeviceError as exc:
            if exc.code != ILLEGAL_ADDRESS or not chain:
                raise
            break  # no end marker, but the map ends here: some devices do that
        if model_id == sm.END_ID:
            break
        if address + 2 + length > 0xFFFF:
            raise WrongDevice(f"SunSpec model {model_id} at {address} announces length "
                              f"{length}, past the end of the register space")
        chain.append(Link(model_id, address, length))
        address += 2 + length
    else:
        raise WrongDevice(f"no end of the SunSpec model chain after {MAX_MODELS} models "
                          f"(from {base})")
    if not chain or chain[0].id != sm.COMMON:
        first = chain[0].id if chain else "the end marker"
        raise WrongDevice(f"the first SunSpec model at {base + 2} is {first}, expected 1 "
                          "(common): not a SunSpec map")
    return chain


def _pick(reg: Register, where: Mapping[int, Link]) -> Link:
    for model_id in reg.model:
        if model_id in where:
            return where[model_id]
    wanted = " or ".join(sm.describe(m) for m in reg.model)
    found = ", ".join(str(m) for m in where) or "none"
    raise WrongDevice(f"{reg.name} needs SunSpec model {wanted}; the device has models {found}")


def _resolve(reg: Register, where: Mapping[int, Link], bodies: Mapping[int, list[int]]) -> Register:
    link = _pick(reg, where)
    model = sm.MODELS[link.id]
    point = model.points[reg.point]
    body = bodies[link.id]
    scale = reg.scale * _sf(model, point, body, reg.point)
    lo, hi = reg.min, reg.max
    if reg.percent_of:
        ref_point = model.points[reg.percent_of]
        ref = _value(body, ref_point) * _sf(model, ref_point, body, reg.percent_of)
        if not ref > 0:
            raise WrongDevice(f"SunSpec {link.id}.{reg.percent_of} reads {ref:g}: "
                              f"{reg.name} ({reg.point}, a percentage of it) cannot be set in W")
        scale *= ref / 100
        # The standard's range is -100…100 % (signed) or 0…100 %: in W, ± the reference.
        lo = lo if lo is not None else (-ref if point.type == "int16" else 0.0)
        hi = hi if hi is not None else ref
    return dataclasses.replace(
        reg, address=link.address + 2 + point.offset, table="holding", words=point.words,
        float32=point.type == "float32", signed=point.type == "int16", scale=scale, min=lo,
        max=hi)


def _sf(model: sm.Model, point: sm.Point, body: list[int], name: str) -> float:
    if not point.sf:
        return 1.0
    raw = body[model.points[point.sf].offset]
    if raw == sm.NOT_IMPLEMENTED["sunssf"]:
        raise WrongDevice(f"SunSpec {model.id}.{point.sf} (the scale of {name}) is not implemented")
    sf = raw - 0x10000 if raw >= 0x8000 else raw
    if abs(sf) > SF_RANGE:
        raise WrongDevice(f"SunSpec {model.id}.{point.sf} reads {sf}, expected -10…10")
    return float(10.0 ** sf)


def _value(body: list[int], point: sm.Point) -> float:
    raw = body[point.offset]
    if raw == sm.NOT_IMPLEMENTED.get(point.type):
        return 0.0
    return float(raw - 0x10000 if point.type == "int16" and raw >= 0x8000 else raw)


async def _words(device: Device, start: int, count: int) -> list[int]:
    """``count`` holding registers from ``start`` (the device splits long reads)."""
    regs = [Register(f"@{a}", a) for a in range(start, start + count)]
    values = await device.read(regs)
    return [values[r.name] for r in regs]


def _text(body: list[int], point: sm.Point) -> str:
    return _ascii(body[point.offset:point.offset + point.words])


def _ascii(words: Sequence[int]) -> str:
    raw = b"".join(int(w).to_bytes(2, "big") for w in words)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
