"""``edgepair pi notify-test``: one test message to each ``[[notify]]`` target, at once.

A target is only known to work once it took a message: this sends one directly (not
through the outbox, nothing is retried or persisted) and says per target what happened.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

from handshake.util.cliexit import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from handshake.util.timeutil import iso
from pi.config import PiConfig
from pi.notify.targets import DeliveryError, make_sender


def sample_message(now: float) -> dict[str, object]:
    """A message like a real one (``event`` "test"), so receivers' automations can be tried."""
    return {"id": f"test@{round(now * 1000)}", "event": "test", "key": "test",
            "severity": "info", "title": "edgepair test",
            "message": "a test notification from edgepair: this target works", "at": iso(now),
            "details": {}}


async def send_tests(config: PiConfig, names: list[str]) -> dict[str, str | None]:
    """Each chosen target's outcome: None when it took the message, else why not."""
    credentials = config.secrets().notify
    targets = [t for t in config.notify if not names or t.label in names]
    message = sample_message(time.time())
    async with aiohttp.ClientSession() as session:
        async def one(label: str) -> str | None:
            target = next(t for t in targets if t.label == label)
            try:
                await make_sender(target, credentials.get(label), session).send(message)
            except DeliveryError as exc:
                return str(exc)
            return None

        labels = [t.label for t in targets]
        results = await asyncio.gather(*(one(label) for label in labels))
    return dict(zip(labels, results, strict=True))


def main(config: PiConfig, names: list[str]) -> int:
    """Print one line per target; EXIT_FAILED when any did not take the message."""
    if not config.notify:
        print(f"edgepair: {config.file} has no [[notify]] target", file=sys.stderr)
        return EXIT_USAGE
    unknown = sorted(set(names) - {t.label for t in config.notify})
    if unknown:
        print(f"edgepair: no [[notify]] target named {', '.join(unknown)} in {config.file} "
              f"(configured: {', '.join(t.label for t in config.notify)})", file=sys.stderr)
        return EXIT_USAGE
    results = asyncio.run(send_tests(config, names))
    for label, error in results.items():
        print(f"{label}: {'ok' if error is None else 'FAILED: ' + error}")
    return EXIT_OK if all(e is None for e in results.values()) else EXIT_FAILED
