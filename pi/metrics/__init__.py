"""Prometheus metrics of the Pi, built from its public files (``GET /metrics``).

prometheus-client is imported on the first scrape (``Scrape``): a Pi nobody scrapes does
not carry its RSS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pi.metrics.collector import Metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Scrape:
    """The collector behind ``GET /metrics``, made when it is first asked for."""

    def __init__(self, public_dir: Path, *, clock: Callable[[], float] = time.time,
                 dns: object = None,
                 notify: Callable[[], dict[str, dict[str, int]]] | None = None) -> None:
        self.public_dir, self.clock, self.dns, self.notify = public_dir, clock, dns, notify
        self._metrics: Metrics | None = None
        self._lock = threading.Lock()

    def reuse(self) -> bytes | None:
        """The last text when no file changed since (cheap: fine in the event loop)."""
        return None if self._metrics is None else self._metrics.reuse()

    def render(self) -> bytes:
        """The Prometheus text (blocking: imports, file reads; call it in a thread)."""
        with self._lock:
            if self._metrics is None:
                from pi.metrics import live  # noqa: PLC0415 - see the module docstring
                from pi.metrics.collector import Metrics  # noqa: PLC0415

                self._metrics = Metrics(self.public_dir, clock=self.clock,
                                        extra=live.extras(self.dns, self.notify))
        return self._metrics.render()
