"""``edgepair pi run mqtt``: the public files → retained MQTT state + Home Assistant discovery.

On every change of a public file (watchdog), and at least every ``refresh_s`` (a writer that
stopped makes its file stale), the files are read, mapped to entities and topics
(``pi.mqtt.entities``, ``pi.mqtt.discovery``), and only what changed is published. A lost
broker is retried with capped backoff; on every (re)connect everything is published again,
so a broker that restarted without persistence is whole again at once, and what this daemon
left retained but no longer wants (a plug removed, even while it was stopped: the topic set
is kept in ``private/mqtt-topics.json``) is cleared. A refused login is
one ERROR line, then quiet retries: never a crash loop.

With ``allow_wake`` the "Wake host" button's command is handed to the api daemon's own
anonymous ``POST /api/v1/wake``, so it shares that endpoint's rate limit; who may press it
is the broker's ACL's business (write access to ``<topic_prefix>/host/wake``).

Light to import: no aiohttp (the daemon's whole RSS budget is 30 MB on a Pi).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handshake import __version__, documents
from handshake.documents import MqttDocument
from handshake.errors import ConfigError
from handshake.util import atomic, privatefile
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import iso
from handshake.util.urls import local_url
from pi.config import PiConfig
from pi.mqtt import discovery, entities, sources, wake
from pi.mqtt._paho import MqttConnectError, aiomqtt
from pi.mqtt.config import MqttConfig
from pi.mqtt.discovery import Message, Names
from pi.mqtt.entities import Source

log = logging.getLogger("pi.mqtt")

WATCHDOG_LOOPS = ("mqtt",)
# Reconnect backoff: 1, 2, 4 … s, capped so a broker back from a reboot is seen within a minute.
RECONNECT_BASE_S = 1.0
RECONNECT_MAX_S = 60.0
# A CONNECT the broker does not answer (a half-open link) is given up after this.
CONNECT_TIMEOUT_S = 10.0
# PINGREQ period: a dead broker is noticed within 1.5 × this, and the last will fires then.
KEEPALIVE_S = 30
# One batch of QoS 1 publishes must be acknowledged within this, or the link is dead.
PUBLISH_TIMEOUT_S = 15.0
# Publishes awaiting their PUBACK at once: within paho's 20 in flight, and aiomqtt's 10
# before it warns about "pending publish calls".
PUBLISH_BATCH = 10
# The loop wakes at least this often to kick the systemd watchdog (WatchdogSec=30).
KICK_S = 10.0
# Events of several files written together are read together.
COALESCE_S = 0.002
# Saying "offline" on a clean stop may not hold up the stop.
STOP_PUBLISH_TIMEOUT_S = 1.0
# mqtt.json is rewritten at least this often (pi.json judges the daemon alive by it), and
# at once when the link comes or goes.
STATUS_INTERVAL_S = 30.0
# private/: the retained topics this daemon owns (see MqttService._save_topics).
TOPICS_FILE = "mqtt-topics.json"
# MQTT CONNACK reason codes (3.1.1: 4, 5; 5.0: 134, 135) for a refused login.
_AUTH_CODES = {4, 5, 134, 135}


async def run(config: PiConfig, *, ready: Callable[[], None], kick: Callable[[str], None]) -> None:
    """Publish the public files to the broker until cancelled."""
    if config.mqtt is None:
        raise ConfigError([f"{config.file}: mqtt: the mqtt daemon needs an [mqtt] section"])
    password = config.secrets().mqtt_password
    if config.mqtt.username is not None and password is None:
        raise ConfigError([f"{config.pi.secrets_file}: mqtt_password: required when "
                           f"[mqtt] username is set"])
    hostname = socket.gethostname()
    names = Names.of(config.mqtt.topic_prefix, config.mqtt.discovery_prefix, hostname,
                     __version__)
    await MqttService(config, config.mqtt, names, password).run(ready, kick)


class MqttService:
    """The loop: read what changed, publish the difference, keep the broker connection."""

    def __init__(self, config: PiConfig, mqtt: MqttConfig, names: Names,
                 password: str | None, clock: Callable[[], float] = time.time) -> None:
        self.config, self.mqtt, self.names, self.password = config, mqtt, names, password
        self.clock = clock
        self.sources: dict[str, Source] = {}
        self.published: dict[str, bytes] = {}  # what the broker holds from us
        self.topics_file = config.private_dir / TOPICS_FILE
        self.remembered = _load_topics(self.topics_file)  # retained by an earlier run
        self._saved: set[str] | None = None  # the topic set last written to topics_file
        self.connected = False
        self.connects = 0
        self.messages_published = 0
        self.last_publish: float | None = None
        self.last_error: str | None = None
        self.since = clock()
        self._status_changed = asyncio.Event()
        self._dirty: set[str] = set(entities.SOURCES)
        self._wakeup = asyncio.Event()
        self._quiet = QuietLogger(log)
        self._failing: str | None = None  # the last connection failure logged

    # -- the loop ----------------------------------------------------------------------

    async def run(self, ready: Callable[[], None], kick: Callable[[str], None]) -> None:
        watcher = sources.Watcher(self.config.public_dir, self._changed)
        watcher.start()
        status = asyncio.create_task(self._publish_status(), name="mqtt.json")
        try:
            ready()
            attempt = 0
            while True:
                kick("mqtt")
                try:
                    await self._session(kick)
                except* aiomqtt.MqttError as group:  # raised alone, or by the session's tasks
                    self._connection_failed(_first(group), attempt)
                if self.connected:
                    attempt = 0
                    self._link(connected=False)
                await self._pause(min(RECONNECT_BASE_S * 2 ** attempt, RECONNECT_MAX_S), kick)
                attempt += 1
        finally:
            status.cancel()
            await asyncio.gather(status, return_exceptions=True)
            await asyncio.to_thread(watcher.stop)

    async def _session(self, kick: Callable[[str], None]) -> None:
        """One connection: publish everything, then what changes, and serve the button."""
        async with self._client() as client:
            self._link(connected=True)
            self.connects += 1
            if self._failing is not None:
                log.info("mqtt: connected to %s:%d again", self.mqtt.host, self.mqtt.port)
            else:
                log.info("mqtt: connected to %s:%d, publishing under %s", self.mqtt.host,
                         self.mqtt.port, self.names.topic_prefix)
            self._failing = None
            try:
                await client.publish(self.names.status, discovery.ONLINE, qos=1, retain=True,
                                     timeout=PUBLISH_TIMEOUT_S)
                if self.mqtt.allow_wake:
                    await client.subscribe(self.names.wake, qos=1, timeout=PUBLISH_TIMEOUT_S)
                async with asyncio.TaskGroup() as group:
                    # Reading the messages is also what notices a lost link at once, even
                    # in the middle of the first full publish.
                    group.create_task(self._listen(client))
                    group.create_task(self._follow(client, kick))
            except asyncio.CancelledError:
                # A clean stop: say so now rather than in KEEPALIVE_S × 1.5 (the last will).
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(self.names.status, discovery.OFFLINE, qos=1,
                                         retain=True, timeout=STOP_PUBLISH_TIMEOUT_S)
                raise

    async def _follow(self, client: aiomqtt.Client, kick: Callable[[str], None]) -> None:
        """Publish everything (the broker may have lost it all in a restart without
        persistence), then what changes; re-read everything every ``refresh_s``."""
        # What the broker may still hold from before (this connection's predecessor, or a
        # run before a restart of the daemon): cleared unless still wanted. ``published``
        # changes only once the broker acknowledged, so a link lost midway forgets nothing.
        held = set(self.published) | self.remembered
        wanted = await self._wanted(everything=True)
        gone = [Message(t, b"") for t in sorted(held - wanted.keys())]
        await self._send(client, discovery.changes({}, wanted) + gone, wanted)
        refresh_at = time.monotonic() + self.mqtt.refresh_s
        while True:
            kick("mqtt")
            wait = max(0.0, min(refresh_at - time.monotonic(), KICK_S))
            try:
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
                await asyncio.sleep(COALESCE_S)
            except TimeoutError:
                pass
            everything = time.monotonic() >= refresh_at
            if not everything and not self._dirty:
                continue
            if everything:
                refresh_at = time.monotonic() + self.mqtt.refresh_s
            wanted = await self._wanted(everything=everything)
            await self._send(client, discovery.changes(self.published, wanted), wanted)

    async def _wanted(self, *, everything: bool) -> dict[str, bytes]:
        names = set(entities.SOURCES) if everything else self._dirty
        self._dirty = set()
        self._wakeup.clear()
        now = self.clock()
        read = await asyncio.to_thread(self._read, names, now)
        for name, source in read.items():
            if source is None:
                self.sources.pop(name, None)
            else:
                self.sources[name] = source
        listed = entities.entities(self.sources, allow_wake=self.mqtt.allow_wake)
        return discovery.retained(self.names, listed, entities.availability(self.sources))

    def _read(self, names: set[str], now: float) -> dict[str, Source | None]:
        public = self.config.public_dir
        return {name: sources.read(public, name, self.sources.get(name), now, self._quiet)
                for name in names}

    async def _send(self, client: aiomqtt.Client, messages: list[Message],
                    wanted: dict[str, bytes]) -> None:
        """Publish ``messages`` (QoS 1, acknowledged) and remember what the broker holds."""
        if not messages:
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                for at in range(0, len(messages), PUBLISH_BATCH):
                    await asyncio.gather(*(client.publish(m.topic, m.payload, qos=1,
                                                          retain=m.retain)
                                           for m in messages[at:at + PUBLISH_BATCH]))
        except TimeoutError:
            raise aiomqtt.MqttError(f"no PUBACK within {PUBLISH_TIMEOUT_S:g} s") from None
        self.published = dict(wanted)
        if any(m.topic.endswith("/config") for m in messages):
            self._status_changed.set()  # entities came or went: mqtt.json says how many
        if set(wanted) != self._saved:
            await asyncio.to_thread(self._save_topics, set(wanted))
        self.messages_published += len(messages)
        self.last_publish = self.clock()
        log.debug("mqtt: published %d message(s)", len(messages))

    def _save_topics(self, topics: set[str]) -> None:
        """The retained topics this daemon owns, so a later run can clear what went away
        meanwhile (written only when the set changes: a plug added or removed)."""
        try:
            self.topics_file.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(self.topics_file, {"topics": sorted(topics)}, 0o640)
        except OSError as exc:
            self._quiet.failure("topics", "mqtt: cannot write %s: %s", self.topics_file,
                                exc.strerror or exc)
            return
        self._quiet.success("topics", "mqtt: %s written again", self.topics_file)
        self.remembered, self._saved = set(), topics

    def _link(self, *, connected: bool) -> None:
        self.connected, self.since = connected, self.clock()
        self._status_changed.set()

    def status_document(self) -> MqttDocument:
        entity_count = sum(1 for t in self.published if t.endswith("/config"))
        return MqttDocument(
            generated_at=iso(self.clock()) or "", interval_s=STATUS_INTERVAL_S,
            broker=f"{self.mqtt.host}:{self.mqtt.port}", connected=self.connected,
            since=iso(self.since), topic_prefix=self.names.topic_prefix, entities=entity_count,
            messages_published=self.messages_published, connects=self.connects,
            last_publish=iso(self.last_publish), last_error=self.last_error)

    async def _publish_status(self) -> None:
        """mqtt.json: on every change of the link, and every STATUS_INTERVAL_S."""
        path = self.config.public_dir / documents.FILES[MqttDocument]
        while True:
            self._status_changed.clear()
            await asyncio.to_thread(documents.try_publish, path, self.status_document(),
                                    self._quiet)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_INTERVAL_S):
                    await self._status_changed.wait()

    def _changed(self, name: str) -> None:
        self._dirty.add(name)
        self._wakeup.set()

    async def _pause(self, delay: float, kick: Callable[[str], None]) -> None:
        """Sleep ``delay`` before reconnecting, kicking the watchdog meanwhile."""
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, KICK_S))
            kick("mqtt")

    # -- the broker connection -----------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        mqtt = self.mqtt
        return aiomqtt.Client(
            mqtt.host, mqtt.port, username=mqtt.username, password=self.password,
            identifier=mqtt.client_id or f"edgepair-{self.names.hostname}"[:64],
            will=aiomqtt.Will(self.names.status, discovery.OFFLINE, qos=1, retain=True),
            tls_context=_tls_context(mqtt) if mqtt.tls else None,
            keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S,
            logger=logging.getLogger("aiomqtt"))

    def _connection_failed(self, exc: BaseException, attempt: int) -> None:
        """First failure of a kind at WARNING (a refused login at ERROR), repeats at DEBUG."""
        where = f"{self.mqtt.host}:{self.mqtt.port}"
        retry = min(RECONNECT_BASE_S * 2 ** attempt, RECONNECT_MAX_S)
        auth = isinstance(exc, MqttConnectError) and _code(exc) in _AUTH_CODES
        key = "auth" if auth else "connect"
        self.last_error = f"{'login refused' if auth else 'connection'}: {exc}"
        self._status_changed.set()
        if self._failing == key:
            log.debug("mqtt: %s still failing (%s); next try in %.1f s", where, exc, retry)
        elif auth:
            user = self.mqtt.username or "(no username)"
            log.error("mqtt: the broker at %s refused the login of %s: %s; check [mqtt] "
                      "username in %s and mqtt_password in %s (retrying, at most every %g s)",
                      where, user, exc, self.config.file, self.config.pi.secrets_file,
                      RECONNECT_MAX_S)
        elif self.connected:
            log.warning("mqtt: lost the broker at %s (%s); reconnecting", where, exc)
        else:
            log.warning("mqtt: cannot reach the broker at %s (%s); retrying with backoff up "
                        "to %g s", where, exc, RECONNECT_MAX_S)
        self._failing = key

    # -- the Wake host button ------------------------------------------------------------

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Serve the button (the only subscription); raises MqttError when the link is lost."""
        async for message in client.messages:
            if not self.mqtt.allow_wake or not message.topic.matches(self.names.wake):
                continue
            if message.retain:  # a stale retained press must not wake the host later
                log.warning("mqtt: ignoring a retained message on %s", self.names.wake)
                continue
            if message.payload != discovery.PRESS.encode():
                log.warning("mqtt: ignoring %r on %s (expected %s)", message.payload,
                            self.names.wake, discovery.PRESS)
                continue
            status, answer = await asyncio.to_thread(wake.post, local_url(self.config.api.listen))
            log.info("mqtt: Wake host pressed: %s %s", status, answer)
            result = json.dumps({"status": status, "answer": answer}).encode()
            await client.publish(self.names.topic("host/wake/result"), result, qos=1,
                                 retain=False, timeout=PUBLISH_TIMEOUT_S)


def _load_topics(path: Path) -> set[str]:
    def convert(raw: Any) -> set[str]:
        topics = raw["topics"]
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise ValueError("expected {\"topics\": [str, …]}")
        return set(topics)

    return privatefile.read(path, convert, log=log) or set()


def _first(group: BaseExceptionGroup[aiomqtt.MqttError]) -> aiomqtt.MqttError:
    """The first MQTT error of a (possibly nested) group."""
    found = group.exceptions[0]
    return _first(found) if isinstance(found, BaseExceptionGroup) else found


def _tls_context(mqtt: MqttConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.fspath(mqtt.ca_file) if mqtt.ca_file else None)


def _code(exc: aiomqtt.MqttCodeError) -> int | None:
    rc = exc.rc
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None
