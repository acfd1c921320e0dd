"""Entities as MQTT messages: retained state topics and Home Assistant discovery configs.

Pure: ``retained(names, entities, available)`` is every retained topic the daemon wants on
the broker with its payload; ``changes(published, wanted)`` is what to send so the broker
holds exactly that (an entity that went away gets an empty retained payload, which clears
the topic and removes the entity from Home Assistant).

Layout below ``topic_prefix`` (default ``edgepair/<pi hostname>``):
``status`` (``online``/``offline``, the last will), ``<source>/available`` per public file
(and per node), one topic per value (``host/state``, ``plug/nas/power_w``…), and
``host/wake`` (the button's command topic, with ``allow_wake``). Discovery configs go to
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (Home Assistant's layout).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pi.mqtt.entities import Entity, slug

ONLINE, OFFLINE = b"online", b"offline"
# Home Assistant reads this state payload as "unknown" (a plug that did not answer).
UNKNOWN = b"None"
PRESS = "PRESS"


@dataclass(frozen=True, slots=True)
class Names:
    """Where this Pi's topics live and how its Home Assistant device is named."""

    topic_prefix: str
    discovery_prefix: str
    node_id: str  # the discovery topic's node level and the unique_id prefix
    hostname: str
    version: str

    @classmethod
    def of(cls, topic_prefix: str | None, discovery_prefix: str, hostname: str,
           version: str) -> Names:
        return cls(topic_prefix or f"edgepair/{hostname}", discovery_prefix,
                   f"edgepair_{slug(hostname)}", hostname, version)

    @property
    def status(self) -> str:
        """The daemon's availability topic (its last will says ``offline``)."""
        return f"{self.topic_prefix}/status"

    @property
    def wake(self) -> str:
        """The Wake host button's command topic."""
        return f"{self.topic_prefix}/host/wake"

    def topic(self, path: str) -> str:
        return f"{self.topic_prefix}/{path}"

    def config_topic(self, entity: Entity) -> str:
        return f"{self.discovery_prefix}/{entity.component}/{self.node_id}/{entity.object_id}/config"

    def device(self) -> dict[str, object]:
        """One Home Assistant device per Pi."""
        return {"identifiers": [self.node_id], "name": f"edgepair {self.hostname}",
                "manufacturer": "edgepair", "model": "edgepair Pi", "sw_version": self.version}


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = True


def retained(names: Names, entities: Iterable[Entity],
             available: Mapping[str, bool]) -> dict[str, bytes]:
    """Every retained topic and payload: discovery configs first, then availability, then states
    (Home Assistant subscribes to a state topic once it has the entity's config)."""
    listed = list(entities)
    out = {names.config_topic(e): discovery_payload(names, e) for e in listed}
    for source in sorted({e.source for e in listed}):
        out[names.topic(f"{source}/available")] = ONLINE if available.get(source) else OFFLINE
    for e in listed:
        if e.component != "button":
            out[names.topic(e.path)] = state_payload(e.state)
    return out


def changes(published: Mapping[str, bytes], wanted: Mapping[str, bytes]) -> list[Message]:
    """What to publish so the broker holds ``wanted``, given it holds ``published``."""
    out = [Message(t, p) for t, p in wanted.items() if published.get(t) != p]
    out += [Message(t, b"") for t in published if t not in wanted]
    return out


def discovery_payload(names: Names, entity: Entity) -> bytes:
    """The entity's Home Assistant MQTT discovery config (JSON, full key names)."""
    config: dict[str, object] = {
        "name": entity.name,
        "unique_id": f"{names.node_id}_{entity.object_id}",
        "device": names.device(),
        "origin": {"name": "edgepair", "sw_version": names.version},
        "availability": [{"topic": names.status},
                         {"topic": names.topic(f"{entity.source}/available")}],
        "availability_mode": "all",
        "qos": 1,
    }
    if entity.component == "button":
        config |= {"command_topic": names.wake, "payload_press": PRESS, "retain": False}
    else:
        config["state_topic"] = names.topic(entity.path)
    config |= entity.config
    return json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()


def state_payload(value: object) -> bytes:
    """A state as Home Assistant reads it: ON/OFF, a number, text; ``None`` for unknown."""
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return b"ON" if value else b"OFF"
    if isinstance(value, float):
        if not math.isfinite(value):
            return UNKNOWN
        return (str(int(value)) if value.is_integer() else repr(round(value, 4))).encode()
    return str(value).encode()
