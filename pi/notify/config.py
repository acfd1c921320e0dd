"""``[[notify]]`` targets and ``[notify_options]`` in pi.toml; their credentials in the secrets file.

Light on purpose (check-config imports it): TOML and Structs only.
"""

import re
from collections.abc import Iterator
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from handshake.util.configfile import is_url
from handshake.util.schema import Check, Section

# The events a target may ask for (``events``); every one by default.
EVENTS = ("host_unreachable", "host_back", "wake_timeout", "safe_state", "safe_state_left",
          "inbox_waiting", "inbox_cleared", "plug_unreachable", "plug_back", "disk_low",
          "disk_ok", "memory_low", "memory_ok", "node_pending", "backup_failed", "backup_ok")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_TOPIC_RE = re.compile(r"^[^#+\x00]{1,256}$")


def _is_target_url(value: str) -> bool:
    if value.startswith(("mqtt://", "mqtts://")):
        return is_url("http://" + value.split("://", 1)[1])
    return is_url(value)


def _events(value: tuple[str, ...]) -> bool:
    return bool(value) and all(v in EVENTS for v in value)


class NotifyTarget(Section, frozen=True, kw_only=True):
    type: Annotated[Literal["webhook", "ntfy", "mqtt"], Meta(
        description="webhook: a JSON POST (Home Assistant, Gotify, any receiver); ntfy: a "
                    "topic URL; mqtt: a topic on a broker")]
    name: Annotated[str | None, Check(lambda v: v is None or bool(_NAME_RE.match(v)),
                                      "a short name of letters, digits, '-', '_' or '.'"),
                    Meta(description="names its credentials in the secrets file ([notify.NAME]); "
                                     "default: the type")] = None
    url: Annotated[str | None, Check(lambda v: v is None or _is_target_url(v),
                                     "an http(s):// or mqtt(s):// URL"), Meta(
        description="webhook: where to POST; ntfy: the topic URL (https://ntfy.sh/TOPIC); mqtt: "
                    "the broker (mqtt://host:1883 or mqtts://host:8883)")] = None
    topic: Annotated[str | None, Check(lambda v: v is None or bool(_TOPIC_RE.match(v)),
                                       "an MQTT topic without wildcards"),
                     Meta(description="mqtt: the topic to publish on")] = None
    events: Annotated[tuple[str, ...], Check(_events, f"a non-empty list of {', '.join(EVENTS)}"),
                      Meta(description="the events sent to this target")] = EVENTS
    timeout_s: Annotated[float, Meta(ge=0.5, le=120, description="one delivery's deadline")] = 10.0

    @property
    def label(self) -> str:
        return self.name or self.type

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.url is None:
            yield ("url", f'required for type = "{self.type}"')
        elif self.type == "mqtt" and not self.url.startswith(("mqtt://", "mqtts://")):
            yield ("url", f"expected mqtt://host[:port] or mqtts://host[:port], got {self.url!r}")
        elif self.type != "mqtt" and not self.url.startswith(("http://", "https://")):
            yield ("url", f"expected an http:// or https:// URL, got {self.url!r}")
        if self.type == "mqtt" and self.topic is None:
            yield ("topic", 'required for type = "mqtt"')


class NotifyOptions(Section, frozen=True, kw_only=True):
    debounce_s: Annotated[float, Meta(
        ge=0, le=3600, description="an alarm condition (and its end) must hold this long "
                                   "before it is sent: a blip is never an alarm")] = 30.0
    disk_free_min_pct: Annotated[float, Meta(
        ge=0, le=100, description="disk_low below this much free space on state_dir")] = 10.0
    memory_available_min_pct: Annotated[float, Meta(
        ge=0, le=100, description="memory_low below this much memory available")] = 10.0
    retry_max_s: Annotated[float, Meta(
        ge=1, le=86400, description="a failing target is retried at least this often")] = 300.0
    max_age_s: Annotated[float, Meta(
        ge=60, le=30 * 86400, description="a message not delivered by then is dropped (logged)")] = 86400.0


class NotifyCredentials(Section, frozen=True, kw_only=True):
    """``[notify.NAME]`` in the secrets file: what the target NAME needs to accept a message."""

    token: Annotated[str | None, Meta(description="sent as Authorization: Bearer (ntfy access "
                                                  "token, Home Assistant, Gotify app token)")] = None
    username: Annotated[str | None, Meta(description="HTTP basic auth, or the MQTT user")] = None
    password: Annotated[str | None, Meta(description="its password")] = None
    headers: Annotated[dict[str, str], Meta(description="extra HTTP headers (X-Gotify-Key, …)")] = \
        msgspec.field(default_factory=dict)
