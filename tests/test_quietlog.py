"""Rate-limited, one-line logging for what any client can cause as often as it likes."""

from __future__ import annotations

import logging

import pytest

from handshake.util.quietlog import OneLineFilter, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_a_minute_and_the_next_says_how_many_were_held(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = RateLimitedLog(logging.getLogger("t.rate"), interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.rate"):
        assert quiet.warning("k", "refused %s", "a")
        for _ in range(5):
            assert not quiet.warning("k", "refused %s", "b")
        assert quiet.warning("other", "other %s", "c")  # another key is not held back
        clock.now = 60.0
        assert quiet.warning("k", "refused %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a", "other c", "refused d (and 5 more like it since the last one)"]


def test_a_library_traceback_becomes_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("t.lib")
    logger.addFilter(OneLineFilter(clock=clock))
    with caplog.at_level(logging.DEBUG, logger="t.lib"):
        for client in ("10.0.0.1", "10.0.0.2"):
            try:
                raise ValueError("bad request line\nsecond line")
            except ValueError:
                logger.exception("Error handling request from %s", client)
    assert len(caplog.records) == 1  # the template, not the address, is the key
    record = caplog.records[0]
    assert record.levelname == "WARNING"
    assert record.exc_info is None
    assert record.getMessage() == ("Error handling request from 10.0.0.1: "
                                   "ValueError bad request line")


def test_only_the_named_messages_are_touched(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("t.only")
    logger.addFilter(OneLineFilter(only="socket.accept() out of"))
    with caplog.at_level(logging.DEBUG, logger="t.only"):
        logger.error("Task exception was never retrieved")
        logger.error("Task exception was never retrieved")
        logger.error("socket.accept() out of system resource")
        logger.error("socket.accept() out of system resource")
    assert [r.levelname for r in caplog.records] == ["ERROR", "ERROR", "WARNING"]
