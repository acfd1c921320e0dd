"""Home Assistant's MQTT discovery schema, as its documentation states it, for the components
edgepair publishes (sensor, binary_sensor, button): required and optional keys, device
classes, state classes and the units each device class accepts.

Written from the "MQTT Sensor", "MQTT Binary sensor", "MQTT Button" and "Sensor entity"
pages of home-assistant.io (2025-2026). Home Assistant itself needs a newer Python than
the Pi's 3.11, so the payloads are checked against this transcription instead.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# Keys every MQTT entity may carry (the availability, device and entity options).
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "name",
    "object_id", "origin", "payload_available", "payload_not_available", "platform", "qos",
    "unique_id",
}
COMPONENTS: dict[str, dict[str, set[str]]] = {
    "sensor": {
        "required": {"state_topic"},
        "optional": {"device_class", "expire_after", "force_update", "last_reset_value_template",
                     "options", "suggested_display_precision", "state_class",
                     "unit_of_measurement", "value_template"},
    },
    "binary_sensor": {
        "required": {"state_topic"},
        "optional": {"device_class", "expire_after", "force_update", "off_delay", "payload_off",
                     "payload_on", "value_template"},
    },
    "button": {
        "required": {"command_topic"},
        "optional": {"command_template", "device_class", "payload_press", "retain"},
    },
}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
               "model", "model_id", "name", "serial_number", "suggested_area", "sw_version",
               "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
ENTITY_CATEGORIES = {"sensor": {"diagnostic"}, "binary_sensor": {"diagnostic"},
                     "button": {"config", "diagnostic"}}

STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
# Sensor device classes and the units Home Assistant accepts for them (None: no unit).
SENSOR_UNITS: dict[str, set[str | None]] = {
    "battery": {"%"},
    "carbon_dioxide": {"ppm"},
    "current": {"A", "mA"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB",
                  "YB", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"},
    "duration": {"d", "h", "min", "s", "ms", "μs"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal",
               "Mcal", "Gcal"},
    "enum": {None},
    "humidity": {"%"},
    "illuminance": {"lx"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"},
    "pressure": {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
    "temperature": {"°C", "°F", "K"},
    "timestamp": {None},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
}
# Device classes whose state is not a number: no state class, no unit.
NON_NUMERIC = {"enum", "timestamp", "date"}
# The Energy dashboard takes energy sensors that are totals, never measurements.
ENERGY_STATE_CLASSES = {"total", "total_increasing"}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}
BUTTON_CLASSES = {"identify", "restart", "update"}
_TOPIC_LEVEL = re.compile(r"^[a-zA-Z0-9_-]+$")


def problems(topic: str, config: dict[str, Any], state: bytes | None = None) -> list[str]:
    """What Home Assistant would refuse or warn about in one discovery config (and its state)."""
    out: list[str] = []
    parts = topic.split("/")
    component = parts[1] if len(parts) == 5 and parts[-1] == "config" else None
    if component not in COMPONENTS:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    if not all(_TOPIC_LEVEL.match(level) for level in parts[2:4]):
        out.append(f"{topic}: node_id and object_id must be [a-zA-Z0-9_-]")
    spec = COMPONENTS[component]
    allowed = COMMON | spec["required"] | spec["optional"]
    out += [f"{topic}: unknown key {k!r}" for k in sorted(set(config) - allowed)]
    out += [f"{topic}: missing {k!r}" for k in sorted(spec["required"] - set(config))]
    out += _device(topic, config)
    out += _classes(topic, component, config)
    if state is not None:
        out += _state(topic, component, config, state)
    return out


def _device(topic: str, config: dict[str, Any]) -> list[str]:
    out = []
    if "unique_id" not in config:
        out.append(f"{topic}: no unique_id (the device registry needs one)")
    device = config.get("device")
    if not isinstance(device, dict) or not (device.get("identifiers") or device.get("connections")):
        out.append(f"{topic}: device needs identifiers or connections")
    else:
        out += [f"{topic}: unknown device key {k!r}" for k in sorted(set(device) - DEVICE_KEYS)]
    origin = config.get("origin", {"name": "-"})
    if "name" not in origin or set(origin) - ORIGIN_KEYS:
        out.append(f"{topic}: origin needs a name and only {sorted(ORIGIN_KEYS)}")
    availability = config.get("availability", [])
    if "availability" in config and "availability_topic" in config:
        out.append(f"{topic}: availability and availability_topic are exclusive")
    for item in availability:
        if "topic" not in item or set(item) - AVAILABILITY_KEYS:
            out.append(f"{topic}: availability item {item!r}")
    if config.get("availability_mode", "latest") not in {"all", "any", "latest"}:
        out.append(f"{topic}: availability_mode {config['availability_mode']!r}")
    return out


def _classes(topic: str, component: str, config: dict[str, Any]) -> list[str]:
    out = []
    category = config.get("entity_category")
    if category is not None and category not in ENTITY_CATEGORIES[component]:
        out.append(f"{topic}: entity_category {category!r} not allowed for a {component}")
    device_class = config.get("device_class")
    if component == "binary_sensor" and device_class not in BINARY_SENSOR_CLASSES | {None}:
        out.append(f"{topic}: binary_sensor device_class {device_class!r}")
    if component == "button" and device_class not in BUTTON_CLASSES | {None}:
        out.append(f"{topic}: button device_class {device_class!r}")
    if component != "sensor":
        return out
    state_class, unit = config.get("state_class"), config.get("unit_of_measurement")
    if state_class is not None and state_class not in STATE_CLASSES:
        out.append(f"{topic}: state_class {state_class!r}")
    if device_class is not None:
        if device_class not in SENSOR_UNITS:
            out.append(f"{topic}: sensor device_class {device_class!r} not in the table")
        elif unit not in SENSOR_UNITS[device_class]:
            out.append(f"{topic}: unit {unit!r} not valid for device_class {device_class!r}")
    if device_class in NON_NUMERIC and state_class is not None:
        out.append(f"{topic}: a {device_class} sensor takes no state_class")
    if device_class == "enum" and not config.get("options"):
        out.append(f"{topic}: an enum sensor needs options")
    if "options" in config and device_class != "enum":
        out.append(f"{topic}: options only with device_class enum")
    if device_class == "energy" and state_class not in ENERGY_STATE_CLASSES:
        out.append(f"{topic}: energy needs state_class total or total_increasing")
    return out


def _state(topic: str, component: str, config: dict[str, Any], state: bytes) -> list[str]:
    text = state.decode()
    if text == "None":  # Home Assistant's "unknown"
        return []
    if component == "binary_sensor":
        on, off = config.get("payload_on", "ON"), config.get("payload_off", "OFF")
        return [] if text in (on, off) else [f"{topic}: state {text!r} is neither {on} nor {off}"]
    device_class = config.get("device_class")
    if device_class == "timestamp":
        try:
            if datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is None:
                return [f"{topic}: timestamp {text!r} has no zone"]
        except ValueError:
            return [f"{topic}: timestamp {text!r} is not ISO 8601"]
        return []
    if device_class == "enum":
        return [] if text in config["options"] else [f"{topic}: {text!r} not in options"]
    if "state_class" in config or "unit_of_measurement" in config:
        try:
            float(text)
        except ValueError:
            return [f"{topic}: numeric sensor got {text!r}"]
    return []
