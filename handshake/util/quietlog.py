"""Quiet logging for flapping peers: first failure WARNING, repeats DEBUG, recovery INFO."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class QuietLogger:
    """Tracks which keys are failing so a sleeping host doesn't flood the journal."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.failing: set[str] = set()

    def failure(self, key: str, message: str, *args: object) -> None:
        level = logging.DEBUG if key in self.failing else logging.WARNING
        self.failing.add(key)
        self.log.log(level, message, *args)

    def success(self, key: str, message: str, *args: object) -> None:
        if key in self.failing:
            self.failing.discard(key)
            self.log.info(message, *args)


# Keys remembered before the expired ones are dropped.
MAX_KEYS = 1024


class RateLimitedLog:
    """At most one line per key and interval; the next one says how many were held back.

    For what a client can cause as often as it likes (a refused connection, a malformed
    request, a client gone mid-body): the journal gets a line a minute, not a flood.
    """

    def __init__(self, log: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval_s = interval_s
        self.clock = clock
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log ``message`` at WARNING unless ``key`` logged within the interval; True if logged."""
        return self.log_at(logging.WARNING, key, message, *args)

    def log_at(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message`` at ``level`` unless ``key`` logged within the interval."""
        now = self.clock()
        if len(self._next) > MAX_KEYS:  # keys a client picks (its address): bounded
            self._next = {k: t for k, t in self._next.items() if t > now}
            self._held = {k: n for k, n in self._held.items() if k in self._next}
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        if held:
            message += " (and %d more like it since the last one)"
            args = (*args, held)
        self._next[key] = now + self.interval_s
        self.log.log(level, message, *args)
        return True


class OneLineFilter(logging.Filter):
    """For a library logger a client can trigger (aiohttp's "Error handling request"):
    no traceback, at most WARNING, one line per minute and kind of error."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 only: str = "") -> None:
        super().__init__()
        self.only = only  # only records whose message starts so; the rest pass as they are
        self.interval_s = interval_s
        self.clock = clock
        self._next: dict[str, float] = {}

    @classmethod
    def install(cls, logger: logging.Logger, only: str = "") -> None:
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls(only=only))

    def filter(self, record: logging.LogRecord) -> bool:
        if self.only and not str(record.msg).startswith(self.only):
            return True
        # The key is the message template and the error's type: not the client's address.
        exc_type = type(record.exc_info[1]).__name__ if record.exc_info else ""
        key = f"{record.msg}:{exc_type}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            record.msg = f"{record.getMessage()}: {type(exc).__name__} {first}".rstrip()
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        now = self.clock()
        if now < self._next.get(key, 0.0):
            return False
        self._next[key] = now + self.interval_s
        return True
