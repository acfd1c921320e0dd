"""Where a notification goes: a JSON webhook, an ntfy topic, an MQTT topic (one small class each).

A sender's ``send`` returns once the receiver took the message (HTTP 2xx; MQTT PUBACK at
QoS 1) and raises ``DeliveryError`` otherwise; the service retries with capped backoff.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from handshake import __version__
from handshake.errors import TemporaryError
from pi.notify.config import NotifyCredentials, NotifyTarget

USER_AGENT = f"edgepair/{__version__}"
# Gotify's priorities (ntfy's 1-5 differ): high for an alarm, normal for the rest.
GOTIFY_PRIORITY = {"alarm": 8, "resolved": 4, "info": 5}
NTFY_PRIORITY = {"alarm": "high", "resolved": "default", "info": "default"}
NTFY_TAGS = {"alarm": "warning", "resolved": "white_check_mark", "info": "information_source"}
# What of a refusing receiver's answer goes into the log.
ERROR_BODY_CHARS = 200


class DeliveryError(TemporaryError):
    """The target did not take the message (down, refused, timed out): retried."""


class Sender(Protocol):
    async def send(self, message: Mapping[str, Any]) -> None: ...


def make_sender(target: NotifyTarget, credentials: NotifyCredentials | None,
                session: aiohttp.ClientSession) -> Sender:
    """The sender of one ``[[notify]]`` target."""
    if target.type == "mqtt":
        return MqttSender(target, credentials)
    headers = {"User-Agent": USER_AGENT}
    if credentials is not None:
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        elif credentials.username is not None:
            headers["Authorization"] = aiohttp.BasicAuth(credentials.username,
                                                         credentials.password or "").encode()
        headers.update(credentials.headers)
    kind = NtfySender if target.type == "ntfy" else WebhookSender
    return kind(target, headers, session)


class WebhookSender:
    """A JSON POST: the message itself, plus ``priority`` as Gotify reads it."""

    def __init__(self, target: NotifyTarget, headers: dict[str, str],
                 session: aiohttp.ClientSession) -> None:
        assert target.url is not None
        self.url, self.headers, self.session = target.url, headers, session
        self.timeout = aiohttp.ClientTimeout(total=target.timeout_s)

    async def send(self, message: Mapping[str, Any]) -> None:
        body = {**message, "priority": GOTIFY_PRIORITY.get(str(message.get("severity")), 5)}
        await _post(self.session, self.url, json.dumps(body).encode(),
                    {**self.headers, "Content-Type": "application/json",
                     "X-Edgepair-Event-Id": str(message["id"])}, self.timeout)


class NtfySender:
    """ntfy's plain publish: the text as body, title/priority/tags as headers."""

    def __init__(self, target: NotifyTarget, headers: dict[str, str],
                 session: aiohttp.ClientSession) -> None:
        assert target.url is not None
        self.url, self.headers, self.session = target.url, headers, session
        self.timeout = aiohttp.ClientTimeout(total=target.timeout_s)

    async def send(self, message: Mapping[str, Any]) -> None:
        severity = str(message.get("severity"))
        # HTTP headers are Latin-1: ntfy reads RFC 2047 for the rest; keep the title ASCII.
        title = str(message["title"]).encode("ascii", "replace").decode()
        await _post(self.session, self.url, str(message["message"]).encode(), {
            **self.headers, "Title": title, "Priority": NTFY_PRIORITY.get(severity, "default"),
            "Tags": NTFY_TAGS.get(severity, ""), "X-Edgepair-Event-Id": str(message["id"])},
            self.timeout)


class MqttSender:
    """One QoS 1 publish of the JSON message (aiomqtt, a connection per message: alarms are rare)."""

    def __init__(self, target: NotifyTarget, credentials: NotifyCredentials | None) -> None:
        assert target.url is not None
        assert target.topic is not None
        url = urlsplit(target.url)
        self.tls = url.scheme == "mqtts"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (8883 if self.tls else 1883)
        self.topic, self.timeout = target.topic, target.timeout_s
        self.username = credentials.username if credentials is not None else None
        self.password = credentials.password if credentials is not None else None

    async def send(self, message: Mapping[str, Any]) -> None:
        import aiomqtt  # noqa: PLC0415 - only a Pi with an mqtt target pays for it

        try:
            async with aiomqtt.Client(self.host, self.port, username=self.username,
                                      password=self.password, timeout=self.timeout,
                                      tls_context=ssl.create_default_context() if self.tls
                                      else None) as client:
                await client.publish(self.topic, json.dumps(dict(message)), qos=1)
        except aiomqtt.MqttError as exc:
            raise DeliveryError(f"mqtt {self.host}:{self.port}: {exc}") from None


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                deadline: aiohttp.ClientTimeout) -> None:
    try:
        async with session.post(url, data=body, headers=headers, timeout=deadline,
                                allow_redirects=False) as response:
            if 200 <= response.status < 300:
                return
            text = (await response.text(errors="replace"))[:ERROR_BODY_CHARS]
            raise DeliveryError(f"HTTP {response.status} from {url}: {text.strip()}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"{url}: {exc or type(exc).__name__}") from None
