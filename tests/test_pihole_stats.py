"""Pi-hole stats for the dashboard against the fake Pi-hole v6 on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from handshake import documents
from handshake.errors import ConfigError
from handshake.util import atomic
from pi import api, pihole_stats
from pi.config import PiConfig, load
from pi.pihole_stats import PiholeError, PiholeStats, PiholeStatsConfig, document, next_delay
from tests.fakes.pihole import FakePihole
from tests.helpers import free_port, pi_toml, write_secrets

PASSWORD = "correct horse"
Serve = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
def fake() -> FakePihole:
    return FakePihole(password=PASSWORD)


@pytest.fixture
async def url(fake: FakePihole, aiohttp_server: Serve) -> str:
    server = await aiohttp_server(fake.app())
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def config_with(tmp_path: Path, url: str, password: str | None = PASSWORD,
                interval_s: float = 0.05) -> PiConfig:
    """A Pi config whose [pihole] points at the fake, with a test-sized interval."""
    extra = f'pihole_password = "{password}"\n' if password is not None else ""
    config = load(pi_toml(tmp_path, extra=f'[pihole]\nurl = "{url}"\n'))
    write_secrets(tmp_path / "secrets.toml", extra=extra)
    return msgspec.structs.replace(config, pihole=PiholeStatsConfig(url=url, interval_s=interval_s))


def test_section_defaults_and_problems(tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path, extra="[pihole]\n"))
    assert config.pihole == PiholeStatsConfig(url="http://127.0.0.1", interval_s=60.0)
    config = load(pi_toml(tmp_path, extra='[pihole]\nurl = "http://10.0.0.2:8080"\ninterval_s = 15\n'))
    assert config.pihole == PiholeStatsConfig(url="http://10.0.0.2:8080", interval_s=15.0)
    with pytest.raises(ConfigError) as caught:
        load(pi_toml(tmp_path, extra='[pihole]\nurl = "pi.hole"\ninterval_s = 0\nintervall = 5\n'))
    text = "\n".join(caught.value.problems)
    assert "pihole.url: expected an http:// or https:// URL, got 'pi.hole'" in text
    assert "pihole.interval_s: expected a value ≥ 1" in text
    assert "pihole.intervall: unknown key (did you mean 'interval_s'?)" in text


async def test_summary_becomes_pihole_json(fake: FakePihole, url: str,
                                           session: aiohttp.ClientSession) -> None:
    stats = PiholeStats(url, PASSWORD, session)
    now = 1731830400 + 3600.0
    doc = json.loads(documents.encode(document(await stats.summary(), None, now, 60.0)))
    assert doc == {
        "schema": "edgepair.pihole/1", "generated_at": "2024-11-17T09:00:00.000Z",
        "interval_s": 60.0, "stale_after_s": 180.0, "ok": True, "error": None,
        "queries": {"total": 29476, "blocked": 3081, "percent_blocked": 10.452571868896484},
        "clients": {"active": 9, "total": 14},
        "gravity": {"domains_being_blocked": 157342, "last_update": "2024-11-17T08:00:00.000Z",
                    "age_s": 3600.0},
    }
    assert fake.logins == 1
    await stats.close()
    assert fake.logouts == 1
    assert not fake.sessions


async def test_an_expired_session_logs_in_again(fake: FakePihole, url: str,
                                                session: aiohttp.ClientSession) -> None:
    stats = PiholeStats(url, PASSWORD, session)
    await stats.summary()
    fake.expire_sessions()
    fake.summary["queries"]["total"] = 30000
    assert (await stats.summary())["queries"]["total"] == 30000
    assert fake.logins == 2
    assert [s for _, p, s in fake.requests if p == "/api/stats/summary"] == [200, 401, 200]
    await stats.close()


async def test_refusals_are_clear(fake: FakePihole, url: str,
                                  session: aiohttp.ClientSession) -> None:
    with pytest.raises(PiholeError, match="rejected the password"):
        await PiholeStats(url, "wrong", session).summary()
    with pytest.raises(PiholeError, match="asks for a password: set pihole_password"):
        await PiholeStats(url, None, session).summary()
    fake.max_sessions = 0
    with pytest.raises(PiholeError, match=r"no free API sessions.*HTTP 429 api_seats_exceeded"):
        await PiholeStats(url, PASSWORD, session).summary()
    with pytest.raises(PiholeError, match="unreachable"):
        await PiholeStats(f"http://127.0.0.1:{free_port()}", PASSWORD, session).summary()


async def test_pihole_without_a_password_needs_no_login(url: str, fake: FakePihole,
                                                        session: aiohttp.ClientSession) -> None:
    fake.password = None
    stats = PiholeStats(url, None, session)
    assert (await stats.summary())["clients"] == {"active": 9, "total": 14}
    await stats.close()
    assert fake.logins == 0
    # a password in the secrets file but none set in Pi-hole: one login, no seat, no repeats
    stats = PiholeStats(url, PASSWORD, session)
    await stats.summary()
    await stats.summary()
    await stats.close()
    assert fake.requests.count(("POST", "/api/auth", 200)) == 1
    assert fake.logouts == 0  # no session to give back


def test_document_of_an_error_and_the_backoff() -> None:
    doc = document(None, "Pi-hole at http://x unreachable", 0.0, 120.0)
    assert (doc.ok, doc.error, doc.queries, doc.interval_s) == (
        False, "Pi-hole at http://x unreachable", None, 120.0)
    assert [next_delay(60, n) for n in range(6)] == [60, 60, 120, 240, 300, 300]
    assert next_delay(600, 3) == 600  # never faster than the configured interval
    assert next_delay(60, 10_000) == 300  # no overflow


async def test_run_records_errors_quietly_and_logs_out(
        tmp_path: Path, fake: FakePihole, url: str, session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pi.pihole_stats")
    config = config_with(tmp_path, url)
    path = config.public_dir / "pihole.json"
    task = asyncio.create_task(pihole_stats.run(config, session))
    try:
        await _until(lambda: _read(path).get("ok") is True)
        fake.password = "changed"  # the admin changed it in the web interface
        fake.expire_sessions()
        await _until(lambda: _read(path).get("ok") is False)
        doc = _read(path)
        assert doc["error"] == (f"Pi-hole rejected the password (pihole_password in the secrets "
                                f"file) at {url}: use the admin password or an app password "
                                f"from Settings → Web interface / API")
        assert doc["queries"] is None  # nothing old shown as current
        await _until(lambda: fake.requests.count(("POST", "/api/auth", 401)) >= 3)
        fake.password = PASSWORD
        await _until(lambda: _read(path).get("ok") is True, timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert fake.logouts == 1
    assert not fake.sessions
    levels = [r.levelno for r in caplog.records if r.message.startswith("Pi-hole stats")]
    assert levels[0] == logging.WARNING
    assert set(levels[1:-1]) == {logging.DEBUG}
    assert levels[-1] == logging.INFO  # "readable again"


async def test_the_api_daemon_runs_it_when_pihole_is_configured(
        tmp_path: Path, fake: FakePihole, url: str) -> None:
    config = load(pi_toml(tmp_path, extra=f'[pihole]\nurl = "{url}"\n'))
    write_secrets(tmp_path / "secrets.toml", extra=f'pihole_password = "{PASSWORD}"\n')
    daemon = asyncio.create_task(api.run(config))
    path = config.public_dir / "pihole.json"
    try:
        await _until(lambda: _read(path).get("ok") is True)
        assert _read(path)["clients"] == {"active": 9, "total": 14}
    finally:
        daemon.cancel()
        await asyncio.gather(daemon, return_exceptions=True)
    assert fake.logouts == 1  # the seat is given back on shutdown


def _read(path: Path) -> dict[str, object]:
    try:
        data = atomic.read_json(path)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)
