"""``edgepair node flash``: the bundle a board gets (firmware/ and its config.json) and the
esptool and mpremote commands that put MicroPython and the bundle on it."""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handshake.errors import ValidationError
from pi.nodes.config import CAPABILITIES

# firmware/ in a source checkout; scripts/install-pi copies it to /opt/edgepair/firmware.
_CHECKOUT_FIRMWARE = Path(__file__).resolve().parent.parent.parent / "firmware"
FIRMWARE_DIR = _CHECKOUT_FIRMWARE if _CHECKOUT_FIRMWARE.is_dir() else Path("/opt/edgepair/firmware")
# What each capability gets when --capability names it without settings (ESP32 DevKit pins).
DEFAULTS: dict[str, dict[str, Any]] = {
    "relay": {"pin": 5, "default": False},
    "motor": {"pin_up": 12, "pin_down": 13, "max_s": 30},
    "input": {"pin": 14, "name": "door"},
    "temperature": {"pin": 4},
    "analog": {"pin": 34},
}
# A pairing code a person types: 8 characters from an alphabet without look-alikes.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
# esptool's default for a classic ESP32 MicroPython image: written at 0x1000.
ESP32_IMAGE_OFFSET = "0x1000"
BAUD = 460800


def pairing_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def hardware_id() -> str:
    return "node-" + secrets.token_hex(4)


def parse_capability(spec: str) -> tuple[str, dict[str, Any]]:
    """``motor`` or ``motor:pin_up=12,pin_down=13,max_s=20`` → (name, settings)."""
    name, _, rest = spec.partition(":")
    if name not in CAPABILITIES:
        raise ValidationError(f"expected one of {', '.join(CAPABILITIES)}, got {name!r}",
                              "--capability")
    settings = dict(DEFAULTS[name])
    for item in filter(None, rest.split(",")):
        key, sep, raw = item.partition("=")
        if not sep or key not in settings:
            raise ValidationError(f"{name}: expected {', '.join(settings)} = value, got "
                                  f"{item!r}", "--capability")
        settings[key] = typed_value(raw)
    if name == "motor" and not 0 < settings["max_s"] <= 120:
        raise ValidationError("motor: expected 0 < max_s ≤ 120 (the firmware's hard maximum)",
                              "--capability")
    return name, settings


def typed_value(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw


@dataclass(frozen=True)
class Bundle:
    folder: Path
    hwid: str
    code: str
    config: dict[str, Any]

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


def node_config(*, hwid: str, code: str, pi_url: str, capabilities: dict[str, Any],
                poll_s: float, lost_after_s: float, wifi_ssid: str | None,
                wifi_password: str | None) -> dict[str, Any]:
    """config.json: everything the board needs to find the Pi and pair with it."""
    return {"hwid": hwid, "pairing_code": code, "pi_url": pi_url,
            "wifi": {"ssid": wifi_ssid or "", "password": wifi_password or ""},
            "capabilities": capabilities, "poll_s": poll_s, "lost_after_s": lost_after_s,
            "report_s": 30}


def write_bundle(folder: Path, config: dict[str, Any], firmware: Path = FIRMWARE_DIR) -> Bundle:
    """firmware/*.py and config.json in ``folder`` (created; mode 0700: it holds the code)."""
    sources = sorted(firmware.glob("*.py"))
    if not sources:
        raise ValidationError(f"no firmware in {firmware} (expected main.py, node.py …)",
                              "--firmware")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for source in sources:
        shutil.copyfile(source, folder / source.name)
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=1) + "\n")
    path.chmod(0o600)
    return Bundle(folder, config["hwid"], config["pairing_code"], config)


def commands(bundle: Bundle, port: str, *, erase: bool, image: Path | None) -> list[list[str]]:
    """The exact commands, in order: erase, write MicroPython, copy the bundle, reset."""
    out: list[list[str]] = []
    if erase:
        out.append(["esptool", "--port", port, "erase-flash"])
    if image is not None:
        out.append(["esptool", "--port", port, "--baud", str(BAUD), "write-flash",
                    ESP32_IMAGE_OFFSET, str(image)])
    copy = ["mpremote", "connect", port, "fs", "cp"]
    copy += [str(p) for p in bundle.files()] + [":"]
    out.append(copy)
    out.append(["mpremote", "connect", port, "reset"])
    return out
