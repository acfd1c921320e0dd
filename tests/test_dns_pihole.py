"""The Pi-hole v6 backend against a fake Pi-hole served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from handshake.errors import ConfigError
from pi.config import DnsSection
from pi.config import PiSecrets as Secrets
from pi.dns import DnsRejected, DnsUnavailable, make_backend
from pi.dns.pihole import PiholeDns, rewrite_hosts
from tests.fakes.pihole import FakePihole

NAME = "nas.home.arpa"
PASSWORD = "correct horse"
Serve = Callable[[web.Application], Awaitable[TestServer]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakePihole:
    return FakePihole(password=PASSWORD)


@pytest.fixture
async def url(fake: FakePihole, aiohttp_server: Serve) -> str:
    server = await aiohttp_server(fake.app())
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def backend(url: str) -> AsyncIterator[PiholeDns]:
    dns = PiholeDns(NAME, url, PASSWORD)
    await dns.start()
    try:
        yield dns
    finally:
        await dns.close()


def calls(fake: FakePihole, method: str, path: str) -> int:
    return sum(1 for m, p, _ in fake.requests if (m, p) == (method, path))


async def test_switch_is_one_patch_keeping_other_hosts(fake: FakePihole,
                                                       backend: PiholeDns) -> None:
    await backend.set_address("192.168.1.10")
    assert fake.patches == 1
    assert fake.hosts == ["192.168.1.1 router.lan", "192.168.1.5 printer.lan",
                          "192.168.1.10 nas.home.arpa"]
    await backend.set_address("192.168.1.20")
    assert fake.patches == 2
    assert fake.hosts == ["192.168.1.1 router.lan", "192.168.1.5 printer.lan",
                          "192.168.1.20 nas.home.arpa"]
    assert calls(fake, "PATCH", "/api/config") == 2
    assert await backend.get_address() == "192.168.1.20"


async def test_no_patch_when_already_right(fake: FakePihole, backend: PiholeDns) -> None:
    fake.hosts = ["192.168.1.10 nas.home.arpa", "192.168.1.1 router.lan"]
    await backend.set_address("192.168.1.10")
    await backend.set_address("192.168.1.10")
    assert fake.patches == 0
    assert calls(fake, "PATCH", "/api/config") == 0


async def test_one_session_for_many_calls_and_logout_at_close(fake: FakePihole, url: str) -> None:
    dns = PiholeDns(NAME, url, PASSWORD)
    await dns.start()
    for address in ("192.168.1.10", "192.168.1.20", "192.168.1.10"):
        await dns.set_address(address)
    assert fake.logins == 1
    assert len(fake.sessions) == 1
    await dns.close()
    assert fake.logouts == 1
    assert fake.sessions == {}


async def test_shared_session_is_not_closed(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        dns = PiholeDns(NAME, url, PASSWORD, session=session)
        await dns.start()
        await dns.set_address("192.168.1.10")
        await dns.close()
        assert not session.closed


async def test_expired_session_logs_in_again_once(fake: FakePihole, backend: PiholeDns,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    await backend.set_address("192.168.1.10")
    fake.expire_sessions()
    with caplog.at_level(logging.DEBUG, logger="pi.pihole_api"):  # the shared session
        await backend.set_address("192.168.1.20")
    assert fake.logins == 2
    relogin = [r for r in caplog.records if "logged in" in r.getMessage()]
    assert [r.levelno for r in relogin] == [logging.DEBUG]  # routine, not news
    assert fake.hosts[-1] == "192.168.1.20 nas.home.arpa"
    statuses = [status for m, p, status in fake.requests if p == "/api/config/dns/hosts"]
    assert statuses == [200, 401, 200]


async def test_get_address_sees_a_change_behind_its_back(fake: FakePihole,
                                                         backend: PiholeDns) -> None:
    await backend.set_address("192.168.1.10")
    fake.hosts = ["192.168.1.1 router.lan", "192.168.1.99 nas.home.arpa"]
    assert await backend.get_address() == "192.168.1.99"
    fake.hosts = ["192.168.1.1 router.lan"]
    assert await backend.get_address() is None
    fake.hosts = ["192.168.1.10 nas.home.arpa", "fd00::10 NAS.home.arpa"]
    assert await backend.get_address() is None  # two answers: not what we set
    await backend.set_address("192.168.1.10")
    assert fake.hosts == ["192.168.1.10 nas.home.arpa"]


async def test_wrong_password(fake: FakePihole, url: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    dns = PiholeDns(NAME, url, "wrong", clock=clock)
    with caplog.at_level(logging.ERROR):
        await dns.start()  # logged, not raised: the daemon runs on
    assert "Pi-hole rejected the password" in caplog.text
    with pytest.raises(DnsRejected, match="Pi-hole rejected the password"):
        await dns.set_address("192.168.1.10")
    with pytest.raises(DnsRejected, match="Pi-hole rejected the password"):
        await dns.get_address()
    assert calls(fake, "POST", "/api/auth") == 1  # no login storm
    clock.now += 301
    with pytest.raises(DnsRejected):
        await dns.get_address()
    assert calls(fake, "POST", "/api/auth") == 2  # asked again after a while
    await dns.close()
    assert fake.logins == 0


async def test_app_password_without_app_sudo(fake: FakePihole, backend: PiholeDns) -> None:
    fake.app_sudo = False
    with pytest.raises(DnsRejected, match=r"webserver\.api\.app_sudo") as caught:
        await backend.set_address("192.168.1.10")
    assert "pihole-FTL --config webserver.api.app_sudo true" in str(caught.value)
    assert "read-only" in str(caught.value)  # Pi-hole's own words are kept
    assert await backend.get_address() is None  # reading still works
    with pytest.raises(DnsRejected, match="app_sudo"):
        await backend.set_address("192.168.1.10")
    assert calls(fake, "PATCH", "/api/config") == 1  # the refusal is remembered


async def test_seats_exhausted(fake: FakePihole, url: str) -> None:
    fake.max_sessions = 0
    dns = PiholeDns(NAME, url, PASSWORD)
    with pytest.raises(DnsUnavailable, match="no free API sessions") as caught:
        await dns.get_address()
    message = str(caught.value)
    assert "16" in message
    assert "edgepair logs out on exit" in message
    assert "api_seats_exceeded" in message
    await dns.close()


async def test_pihole_down_is_unavailable(unused_tcp_port: int,
                                          caplog: pytest.LogCaptureFixture) -> None:
    dns = PiholeDns(NAME, f"http://127.0.0.1:{unused_tcp_port}", PASSWORD)
    with caplog.at_level(logging.WARNING):
        await dns.start()
    assert "unreachable" in caplog.text
    with pytest.raises(DnsUnavailable, match="unreachable"):
        await dns.set_address("192.168.1.10")
    await dns.close()


async def test_slow_pihole_times_out(aiohttp_server: Serve) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stall)
    server = await aiohttp_server(app)
    dns = PiholeDns(NAME, f"http://127.0.0.1:{server.port}", PASSWORD, timeout_s=0.05)
    with pytest.raises(DnsUnavailable, match="TimeoutError"):
        await dns.get_address()
    await dns.close()


async def test_no_password_set_needs_no_session(url: str, fake: FakePihole) -> None:
    fake.password = None
    dns = PiholeDns(NAME, url, "anything")
    await dns.set_address("192.168.1.10")
    assert fake.hosts[-1] == "192.168.1.10 nas.home.arpa"
    await dns.close()
    assert calls(fake, "DELETE", "/api/auth") == 0


async def test_fake_serves_stats_summary_to_a_session(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/stats/summary") as response:
            assert response.status == 401
        async with session.post(f"{url}/api/auth", json={"password": PASSWORD}) as response:
            sid = (await response.json())["session"]["sid"]
        async with session.get(f"{url}/api/stats/summary",
                               headers={"X-FTL-SID": sid}) as response:
            summary = await response.json()
    assert {"total", "blocked", "percent_blocked", "unique_domains", "forwarded",
            "cached"} <= summary["queries"].keys()
    assert {"active", "total"} <= summary["clients"].keys()
    assert {"domains_being_blocked", "last_update"} <= summary["gravity"].keys()


def test_rewrite_keeps_other_names_of_a_shared_entry() -> None:
    hosts = ["192.168.1.9 nas.home.arpa nas", "192.168.1.1 router.lan", "bogus"]
    assert rewrite_hosts(hosts, NAME, "192.168.1.10") == [
        "192.168.1.9 nas", "192.168.1.10 nas.home.arpa", "192.168.1.1 router.lan", "bogus"]


def test_make_backend_needs_the_password() -> None:
    dns = DnsSection(backend="pihole")
    with pytest.raises(ConfigError, match="pihole_password"):
        make_backend(dns, Secrets(handshake_key=b"k" * 32))
    backend = make_backend(dns, Secrets(handshake_key=b"k" * 32, pihole_password="pw"))
    assert isinstance(backend, PiholeDns)
