"""``GET /metrics``: the public files as Prometheus text, read at scrape time.

Every document exports its age (``edgepair_document_age_seconds{file}``) and whether it is
stale (``edgepair_document_stale``, by the documents' one staleness rule); a stale document's
value series are dropped, so a dead writer shows as missing data in Grafana, not as a
frozen flat line. An unreadable file is ``edgepair_document_readable 0``.

A file is parsed again only when its size or mtime changed (power.json carries three
plugs' 24 h series); the whole text is reused within one second when nothing changed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from handshake import __version__, documents
from handshake.documents import (
    ControlDocument,
    Document,
    HostDocument,
    InboxDocument,
    PiDocument,
    PiholeDocument,
    PowerDocument,
    UsageDocument,
)
from pi import nodesfile
from pi.metrics import families

NODES_FILE = nodesfile.FILE
# The text is reused within this window when no file changed (ages move by less).
RENDER_REUSE_S = 1.0

# What each typed file turns into: the pure functions in families.py.
_BUILDERS: dict[type[Document], Callable[[Any, float], list[Metric]]] = {
    HostDocument: lambda d, now: families.host(d),
    UsageDocument: lambda d, now: families.usage(d),
    PowerDocument: lambda d, now: families.power(d),
    InboxDocument: families.inbox,
    ControlDocument: lambda d, now: families.control(d),
    PiDocument: lambda d, now: families.pi(d),
    PiholeDocument: lambda d, now: families.pihole(d),
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One file as last parsed: its identity, when it was generated, its staleness limit."""

    key: tuple[int, int]  # (mtime_ns, size)
    generated: float | None  # None: unreadable
    stale_after_s: float | None
    document: Any


Extra = Callable[[], list[Metric]]


class Metrics:
    """The collector and its registry: ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, public_dir: Path, *, clock: Callable[[], float] = time.time,
                 extra: list[Extra] | None = None) -> None:
        self.public_dir = public_dir
        self.clock = clock
        self.extra = extra or []  # live figures of this process (the builtin DNS counter)
        self._readings: dict[str, Reading] = {}
        self._last: tuple[tuple[Any, ...], bytes] | None = None
        self._lock = threading.Lock()  # render() runs in a worker thread
        # What collect() renders: set by render() just before (the registry calls collect()).
        self._now = 0.0
        self._stats_now: tuple[tuple[str, tuple[int, int]], ...] = ()
        self._extra_now: list[Metric] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def render(self) -> bytes:
        """The Prometheus text (blocking: file reads; call it in a thread from the loop)."""
        with self._lock:
            key, extra = self._key()
            cached = self._last
            if cached is not None and cached[0] == key:
                return cached[1]
            self._now, self._stats_now, self._extra_now = self.clock(), key[0], extra
            text = generate_latest(self.registry)
            self._last = (key, text)
            return text

    def reuse(self) -> bytes | None:
        """The last text when nothing changed since (a few stat calls: fine in the loop);
        None while a render runs in a thread (the loop never waits for it)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            cached = self._last
            return cached[1] if cached is not None and cached[0] == self._key()[0] else None
        finally:
            self._lock.release()

    def _key(self) -> tuple[Any, list[Metric]]:
        now = self.clock()
        extra = [f for make in self.extra for f in make()]
        values = [(s.name, s.labels, s.value) for f in extra for s in f.samples]
        return (self._stats(), values, int(now / RENDER_REUSE_S)), extra

    def collect(self) -> Iterator[Metric]:
        """prometheus-client's collector protocol: every family, fresh documents only."""
        now, stats = self._now, self._stats_now
        info = GaugeMetricFamily("edgepair_info", "The edgepair version serving these metrics.",
                                 labels=["version"])
        info.add_metric([__version__], 1.0)
        age = families.labelled("document_age_seconds", "Seconds since the public file was "
                                                     "generated.", "file")
        stale = families.labelled("document_stale", "1 when the file is older than its writer's "
                                                 "stale_after_s: its values are not exported.", "file")
        readable = families.labelled("document_readable", "0 when the file exists but is not a "
                                                       "valid document.", "file")
        values: list[Metric] = []
        for name, stat in stats:
            reading = self._reading(name, stat)
            readable.add_metric([name], 0.0 if reading.generated is None else 1.0)
            if reading.generated is None:
                continue
            age.add_metric([name], round(max(0.0, now - reading.generated), 3))
            is_stale = documents.is_stale(reading.generated, reading.stale_after_s, now)
            stale.add_metric([name], 1.0 if is_stale else 0.0)
            if not is_stale:
                values += self._families(name, reading.document, now)
        yield info
        yield from (f for f in (age, stale, readable) if f.samples)
        yield from values
        yield from self._extra_now

    def _stats(self) -> tuple[tuple[str, tuple[int, int]], ...]:
        found = []
        for name in (*(documents.FILES[kind] for kind in _BUILDERS), NODES_FILE):
            try:
                st = os.stat(self.public_dir / name)
            except OSError:
                continue
            found.append((name, (st.st_mtime_ns, st.st_size)))
        return tuple(found)

    def _reading(self, name: str, key: tuple[int, int]) -> Reading:
        cached = self._readings.get(name)
        if cached is not None and cached.key == key:
            return cached
        reading = self._parse(name, key)
        self._readings[name] = reading
        return reading

    def _parse(self, name: str, key: tuple[int, int]) -> Reading:
        path = self.public_dir / name
        if name == NODES_FILE:
            return _nodes_reading(path, key)
        kind = next(k for k in _BUILDERS if documents.FILES[k] == name)
        try:
            document = documents.read(path, kind)
        except documents.DocumentError:
            document = None
        if document is None:
            return Reading(key, None, None, None)
        limit = document.stale_after_s if document.stale_after_s is not None \
            else documents.stale_after(document.interval_s)
        return Reading(key, document.generated, limit, document)

    def _families(self, name: str, document: Any, now: float) -> list[Metric]:
        if name == NODES_FILE:
            return families.nodes(document)
        return _BUILDERS[type(document)](document, now)


def _nodes_reading(path: Path, key: tuple[int, int]) -> Reading:
    found = nodesfile.read(path)
    if found is None:
        return Reading(key, None, None, None)
    return Reading(key, found.generated, found.stale_after_s, found.raw)
