"""Before the first write: is this the device the profile is for, and where are its registers?

``[identify]`` reads one register and compares it with the values the profile names (a
Deye's device type); a SunSpec profile walks the device's model chain (pi.control.sunspec).
Both the control daemon (before its first tick writes anything) and ``edgepair control
commission`` probe; a wrong device is a WrongDevice and nothing is written to it.
"""

from __future__ import annotations

from pi.control import sunspec
from pi.control.device import Device
from pi.control.profile import Profile


async def probe(profile: Profile, device: Device) -> Profile:
    """The profile to use on ``device`` (resolved if SunSpec); WrongDevice or DeviceError."""
    if profile.identify is not None:
        ident = profile.identify
        raw = (await device.read([ident.register]))[ident.register.name]
        ident.check(raw, profile.name)
    if profile.addressing == "sunspec" and not profile.models:
        profile = await sunspec.discover(profile, device)
    return profile
