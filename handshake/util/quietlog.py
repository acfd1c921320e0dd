"""Quiet logging for flapping peers: first failure WARNING, repeats DEBUG, recovery INFO."""

from __future__ import annotations

import logging


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
