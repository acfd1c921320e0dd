"""The emulated P110 speaks real KLAP v2 and AES: python-kasa's transport, protocol and Energy
module read it through ``KasaPlug``, and every fault maps to the health it should leave."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kasa.httpclient import HttpClient
from kasa.protocols.smartprotocol import SmartProtocol

from pi.power.config import PlugConfig
from pi.power.health import PlugError
from pi.power.plug import KasaPlug
from pi.sim.plug import EmulatedPlug, host_draw
from tests.fakes.power_site import TAPO_PASSWORD, TAPO_USER

TIMEOUT_S = 0.5  # generous: a loaded runner must not turn slow reads into faults


@pytest.fixture(autouse=True)
def _quick_kasa_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-kasa waits 1 s before retrying a timed-out or rejected request, 0.25 s between
    requests after a refused connection: longer than these tests' update timeout."""
    monkeypatch.setattr(SmartProtocol, "BACKOFF_SECONDS_AFTER_TIMEOUT", 0)
    monkeypatch.setattr(HttpClient, "WAIT_BETWEEN_REQUESTS_ON_OSERROR", 0)


@pytest.fixture(params=["klap", "aes"])
async def plug(request: pytest.FixtureRequest) -> AsyncIterator[EmulatedPlug]:
    emulated = EmulatedPlug(encryption=request.param, power_w=42.5, clock=lambda: 1_700_000_000.0)
    await emulated.start()
    try:
        yield emulated
    finally:
        await emulated.stop()


@pytest.fixture
async def link(plug: EmulatedPlug) -> AsyncIterator[KasaPlug]:
    config = PlugConfig(name="nas", address="127.0.0.1", port=plug.port, encryption=plug.encryption)
    kasa_plug = KasaPlug(config, TAPO_USER, TAPO_PASSWORD, TIMEOUT_S, clock=lambda: 123.0)
    try:
        yield kasa_plug
    finally:
        await kasa_plug.close()


async def failure(link: KasaPlug) -> PlugError:
    with pytest.raises(PlugError) as info:
        await link.read()
    return info.value


async def test_readings_through_the_real_energy_module(plug: EmulatedPlug, link: KasaPlug) -> None:
    plug.today_wh, plug.month_wh = 1234.0, 56789.0
    reading = await link.read()
    assert (reading.at, reading.w, reading.today_wh, reading.month_wh) == (123.0, 42.5, 1234, 56789)
    assert plug.handshakes == 1
    plug.power_w = 7.25
    assert (await link.read()).w == 7.25
    plug.power = lambda: 99.0  # a callback wins over power_w: the demo's host plug follows it
    assert (await link.read()).w == 99.0
    assert plug.handshakes == 1  # one session, reused


async def test_counters_missing_means_none(plug: EmulatedPlug, link: KasaPlug) -> None:
    plug.counters = False
    reading = await link.read()
    assert (reading.w, reading.today_wh, reading.month_wh) == (42.5, None, None)


async def test_wrong_account_is_auth_failed(plug: EmulatedPlug, link: KasaPlug) -> None:
    await link.read()
    plug.reject_credentials = True
    assert (await failure(link)).kind == "auth_failed"
    plug.reject_credentials = False
    assert (await link.read()).w == 42.5


async def test_hang_is_unreachable_within_the_timeout(plug: EmulatedPlug, link: KasaPlug) -> None:
    await link.read()
    plug.hang = True
    error = await failure(link)
    assert error.kind == "unreachable"
    assert "no answer within 0.5 s" in str(error)
    plug.hang = False
    assert (await link.read()).w == 42.5


async def test_refused_is_unreachable(plug: EmulatedPlug, link: KasaPlug) -> None:
    await link.read()
    await plug.stop_listening()
    error = await failure(link)
    assert error.kind == "unreachable"
    assert "cannot connect" in str(error)
    await plug.start_listening()
    assert (await link.read()).w == 42.5


async def test_device_error_is_stale(plug: EmulatedPlug, link: KasaPlug) -> None:
    plug.error_code = -1301
    error = await failure(link)
    assert error.kind == "stale"
    assert "DEVICE_ERROR" in str(error)
    plug.error_code = None
    assert (await link.read()).w == 42.5


async def test_missing_energy_method_is_stale_not_a_frozen_value(plug: EmulatedPlug,
                                                                 link: KasaPlug) -> None:
    await link.read()
    plug.energy = False
    error = await failure(link)
    assert error.kind == "stale"
    assert "UNKNOWN_METHOD" in str(error)
    plug.energy = True
    plug.power_w = 3.0
    assert (await link.read()).w == 3.0


async def test_counters_follow_the_power_over_time() -> None:
    now = [1_700_000_000.0]
    plug = EmulatedPlug(power_w=360.0, clock=lambda: now[0])
    plug.answer({"method": "get_device_info"})
    now[0] += 600  # ten minutes at 360 W: 60 Wh
    result = plug.answer({"method": "get_energy_usage"})["result"]
    assert (result["today_energy"], result["month_energy"], result["current_power"]) == (
        60, 60, 360_000)


def test_the_demo_host_plug_follows_the_host() -> None:
    state = ["asleep"]
    draw = host_draw(lambda: state[0], clock=lambda: 0.0)
    assert draw() == 1.2
    state[0] = "up"
    assert draw() == 38.0
    state[0] = "no such state"
    assert draw() == 1.2
