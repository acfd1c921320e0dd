"""systemd's notify protocol (sd_notify), and a watchdog that pings only while every loop lives.

A daemon calls ``Notifier.ready()`` once it serves, and runs ``Watchdog.run()`` beside its
loops; each loop calls ``register(name)`` once and ``kick(name)`` every iteration. When one
loop stops kicking, the watchdog stops sending ``WATCHDOG=1`` and systemd restarts the unit
(``WatchdogSec=``). Without ``NOTIFY_SOCKET`` (tests, a shell, the demo) everything is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

_FIELD_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_USEC_PER_S = 1_000_000


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET``; a no-op when systemd did not set it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased); True when the datagram was sent."""
        message = _encode(fields)
        if self._address is None or not message:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a full queue drops this message, the next one follows.
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as exc:
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "sd_notify to %s failed: %s", self._printable(), exc)
            self._failing = True
            return False
        if self._failing:
            log.info("sd_notify to %s works again", self._printable())
            self._failing = False
        return True

    def ready(self) -> bool:
        return self.notify(READY=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def _printable(self) -> str:
        address = self._address or ""
        return "@" + address[1:] if address.startswith("\0") else address


class Watchdog:
    """Sends ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` while every registered loop kicks."""

    def __init__(self, notifier: Notifier, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, *, pid: int | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        env = os.environ if env is None else env
        self._notifier = notifier
        self._clock = clock
        self._sleep = sleep
        self.period: float | None = _watchdog_period(env, os.getpid() if pid is None else pid)
        self._kicks: dict[str, float] = {}
        self._limits: dict[str, float] = {}
        self._stuck: set[str] = set()

    @property
    def enabled(self) -> bool:
        """True when systemd expects pings from this process."""
        return self.period is not None and self._notifier.enabled

    def register(self, name: str, max_silence_s: float | None = None) -> None:
        """Watch loop ``name`` from now on (again, after a restart of that loop).

        It must kick at least once per watchdog period, or per ``max_silence_s`` for a loop
        whose iterations are legitimately longer (a 60 s publish interval, say).
        """
        self._kicks[name] = self._clock()
        if max_silence_s is None:
            self._limits.pop(name, None)
        else:
            self._limits[name] = max_silence_s

    def unregister(self, name: str) -> None:
        """Stop watching a loop that ended on purpose."""
        self._kicks.pop(name, None)
        self._limits.pop(name, None)
        self._stuck.discard(name)

    def kick(self, name: str) -> None:
        """Record that loop ``name`` completed an iteration."""
        if name not in self._kicks:
            raise KeyError(f"watchdog: loop {name!r} kicked but was never registered")
        self._kicks[name] = self._clock()

    def stuck(self) -> list[str]:
        """The loops that have not kicked in time (none while the watchdog is disabled)."""
        if self.period is None:
            return []
        return healthy(self._kicks, self._clock(), self.period, self._limits)

    def tick(self) -> bool:
        """One check: ping systemd if every loop kicked in time; True when a ping was sent."""
        stuck = self.stuck()
        self._log_changes(stuck)
        return not stuck and self._notifier.watchdog()

    async def run(self) -> None:
        """Ping every half period until cancelled; returns at once when systemd wants none."""
        if self.period is None or not self.enabled:
            log.debug("watchdog: not enabled by systemd (no WATCHDOG_USEC or NOTIFY_SOCKET)")
            return
        interval = self.period / 2
        log.debug("watchdog: WATCHDOG=1 every %.1f s while %s kick", interval,
                  ", ".join(sorted(self._kicks)) or "the event loop runs")
        while True:
            self.tick()
            await self._sleep(interval)

    def _log_changes(self, stuck: list[str]) -> None:
        now = self._clock()
        for name in stuck:
            silent = now - self._kicks[name]
            if name in self._stuck:
                log.debug("watchdog: loop %s still stuck (%.1f s since its last kick)",
                          name, silent)
            else:
                log.warning("watchdog: loop %s is stuck (no kick for %.1f s, limit %.1f s); "
                            "withholding WATCHDOG=1 so systemd restarts the daemon",
                            name, silent, self._limits.get(name, self.period or math.inf))
        for name in self._stuck.difference(stuck):
            if name in self._kicks:
                log.info("watchdog: loop %s is kicking again", name)
        self._stuck = set(stuck)


def healthy(last_kicks: Mapping[str, float], now: float, period: float,
            limits: Mapping[str, float] | None = None) -> list[str]:
    """The names of loops (sorted) whose last kick is older than their limit (default ``period``).

    An empty list means every loop is healthy.
    """
    limits = limits or {}
    return sorted(name for name, kicked in last_kicks.items()
                  if now - kicked > limits.get(name, period))


def _encode(fields: Mapping[str, object]) -> bytes:
    lines = []
    for key, value in fields.items():
        name = key.upper()
        if not _FIELD_RE.match(name):
            raise ValueError(f"sd_notify field names are A-Z, 0-9 and _, got {key!r}")
        text = str(int(value)) if isinstance(value, bool) else str(value)
        # One field per line: a newline inside a value would start a bogus field.
        lines.append(f"{name}={text.replace(chr(10), ' ')}")
    return "\n".join(lines).encode()


def _socket_address(value: str) -> str | None:
    """``/path`` or ``@abstract`` (sent with a leading NUL); None for unset or unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value:
        log.warning("NOTIFY_SOCKET=%r is not a Unix socket path; not notifying systemd", value)
    return None


def _watchdog_period(env: Mapping[str, str], pid: int) -> float | None:
    """``WATCHDOG_USEC`` in seconds, when it is meant for this process."""
    usec_text = env.get("WATCHDOG_USEC", "")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text and pid_text != str(pid):
        return None  # set for another process (our parent, say): not ours to answer
    try:
        usec = int(usec_text)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("WATCHDOG_USEC=%r is not a positive integer; watchdog disabled", usec_text)
        return None
    return usec / _USEC_PER_S
