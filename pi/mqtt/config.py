"""``[mqtt]`` in pi.toml: the broker, the topic prefixes, and whether Home Assistant may wake the host.

Light on purpose (check-config imports it): TOML and Structs only. The password is
``mqtt_password`` in the Pi's secrets file.
"""


import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Check, Section

# MQTT topic levels: no wildcards, no empty level at either end, no NUL (MQTT 3.1.1 §4.7).
_PREFIX_RE = re.compile(r"^[^#+\x00/]+(/[^#+\x00/]+)*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")


def _prefix(value: str) -> bool:
    return bool(_PREFIX_RE.match(value)) and len(value.encode()) <= 200


class MqttConfig(Section, frozen=True, kw_only=True):
    host: Annotated[str, Check(lambda v: bool(_HOST_RE.match(v)), "a host name or IP address"),
                    Meta(description="the MQTT broker (Mosquitto on the Pi: 127.0.0.1)")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535, description="its port (8883 is usual with tls)")] = 1883
    tls: Annotated[bool, Meta(description="TLS to the broker (the system's CA store)")] = False
    ca_file: Annotated[Path | None, Meta(
        description="tls: trust this CA file instead of the system's store")] = None
    username: Annotated[str | None, Meta(
        min_length=1, description="login; its password is mqtt_password in the secrets file")] = None
    client_id: Annotated[str | None, Meta(
        min_length=1, max_length=64, description="default: edgepair-<pi hostname>")] = None
    topic_prefix: Annotated[str | None, Check(_prefix, "MQTT topic levels without + or #"),
                            Meta(description="state topics; default: edgepair/<pi hostname>")] = None
    discovery_prefix: Annotated[str, Check(_prefix, "MQTT topic levels without + or #"),
                                Meta(description="Home Assistant's discovery prefix")] = "homeassistant"
    allow_wake: Annotated[bool, Meta(
        description="a Home Assistant button wakes the host (through the anonymous wake's "
                    "rate limit; the broker's ACL decides who may press it)")] = False
    refresh_s: Annotated[float, Meta(
        ge=0.05, le=3600, description="public files are read again at least this often "
                                      "(a writer that stopped is marked unavailable)")] = 10.0

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.ca_file is not None and not self.tls:
            yield ("ca_file", "expected tls = true when ca_file is set")
