"""The planner's input parsers: aWATTar, forecast.solar, CSV; clear errors for bad or short inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from host.planner import inputs
from host.planner.config import Source
from host.planner.inputs import InputError

T0 = datetime(2030, 1, 15, 0, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def awattar(hours: int = 3, start: datetime = T0, unit: str = "Eur/MWh") -> bytes:
    ms = int(start.timestamp() * 1000)
    return json.dumps({"object": "list", "url": "/de/v1/marketdata", "data": [
        {"start_timestamp": ms + h * 3_600_000, "end_timestamp": ms + (h + 1) * 3_600_000,
         "marketprice": 100.0 + 10 * h, "unit": unit} for h in range(hours)]}).encode()


def test_awattar_prices_in_eur_per_kwh_on_15_minute_slots() -> None:
    series = inputs.parse_prices(awattar(), "prices.json")
    assert series.covered_until(T0) == T0 + timedelta(hours=3)
    assert series.slots(T0, 12, 900) == pytest.approx([0.1] * 4 + [0.11] * 4 + [0.12] * 4)
    assert series.slots(T0 + timedelta(minutes=30), 2, 1800) == pytest.approx([0.1, 0.11])


@pytest.mark.parametrize(("data", "problem"), [
    (awattar(unit="Eur/kWh"), "data[0]: unit 'Eur/kWh'"),
    (b'{"data": [{"start_timestamp": 1}]}', "data[0]: expected start_timestamp"),
    (b'{"data": {}}', "a \\\"data\\\" list"),
    (b'{"something": 1}', "neither aWATTar"),
    (b"{not json", "not valid JSON"),
])
def test_bad_price_json(data: bytes, problem: str) -> None:
    with pytest.raises(InputError) as info:
        inputs.parse_prices(data, "prices.json")
    assert problem.replace("\\", "") in str(info.value)
    assert str(info.value).startswith("prices.json: ")


def test_price_csv_in_eur_per_kwh_or_mwh() -> None:
    kwh = b"start,price_eur_kwh\n2030-01-15T00:00:00Z,0.20\n2030-01-15T00:15:00Z,0.30\n"
    assert inputs.parse_prices(kwh, "p.csv").slots(T0, 2, 900) == [0.2, 0.3]
    mwh = b"start,eur_mwh\n2030-01-15T01:00:00+01:00,250\n"
    series = inputs.parse_prices(mwh, "p.csv")
    assert series.periods[0] == (T0, T0 + timedelta(hours=1), 0.25)


@pytest.mark.parametrize(("text", "problem"), [
    ("start,cost\n2030-01-15T00:00:00Z,1\n", "expected a column named price_eur_kwh or eur_kwh"),
    ("start,price\n2030-01-15T00:00:00,1\n", "line 2: start: timestamp needs a time zone"),
    ("start,price\n2030-01-15T00:00:00Z,cheap\n", "line 2: expected a number, got 'cheap'"),
    ("start,price\n", "no data rows"),
])
def test_bad_price_csv(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        inputs.parse_prices(text.encode(), "p.csv")


def test_a_gap_is_an_error_naming_the_time() -> None:
    series = inputs.parse_prices(awattar(hours=1), "prices.json")
    with pytest.raises(InputError, match=r"no value for 2030-01-15T01:00:00\.000Z"):
        series.slots(T0, 8, 900)


def test_forecast_solar_in_local_time() -> None:
    doc = {"result": {"watts": {"2030-01-15 08:00:00": 0, "2030-01-15 09:00:00": 400,
                                "2030-01-15 10:00:00": 0}},
           "message": {"code": 0, "type": "success", "info": {"timezone": "Europe/Berlin"}}}
    series = inputs.parse_pv(json.dumps(doc).encode(), "pv.json", "auto", UTC)
    # Local days: the series runs to the end of that Berlin day; outside the samples it is 0 W.
    start = datetime(2030, 1, 14, 23, 0, tzinfo=UTC)
    assert series.covered_until(start) == datetime(2030, 1, 15, 23, 0, tzinfo=UTC)
    hourly = series.slots(start, 24, 3600)
    assert hourly[7:11] == [0.0, 200.0, 200.0, 0.0]  # 08:00-10:00 local
    assert sum(hourly) == 400.0


def test_pv_csv_and_errors() -> None:
    series = inputs.parse_pv(b"start,w\n2030-01-15T00:00:00Z,100\n2030-01-15T01:00:00Z,300\n",
                             "pv.csv", "auto", UTC)
    assert series.slots(T0, 2, 3600) == [100.0, 300.0]
    with pytest.raises(InputError, match=r"result\.watts"):
        inputs.parse_pv(b'{"result": {}}', "pv.json", "auto", UTC)
    with pytest.raises(InputError, match=r"aWATTar JSON or CSV, not forecast\.solar"):
        inputs.parse_prices(b'{"result": {"watts": {}}}', "x.json")


def test_load_profiles() -> None:
    daily = inputs.parse_load(b"time,w\n00:00,300\n07:00,900\n09:00,400\n", "load.csv", BERLIN)
    assert isinstance(daily, inputs.DailyProfile)
    # 06:00 UTC is 07:00 in Berlin in January.
    assert daily.slots(datetime(2030, 1, 15, 5, 0, tzinfo=UTC), 3, 3600) == [300.0, 900.0, 900.0]
    series = inputs.parse_load(b"start,load_w\n2030-01-15T00:00:00Z,250\n", "load.csv", UTC)
    assert series.slots(T0, 4, 900) == [250.0] * 4
    default = inputs.default_load(12.0, UTC)
    assert sum(default.slots(T0, 96, 900)) * 0.25 == pytest.approx(12_000)
    with pytest.raises(InputError, match="line 3: expected HH:MM"):
        inputs.parse_load(b"time,w\n00:00,1\n7am,2\n", "load.csv", UTC)


async def test_fetch_files_and_urls(tmp_path: Path, aiohttp_server: Any) -> None:
    (tmp_path / "prices.json").write_bytes(awattar())
    assert await inputs.fetch(Source(str(tmp_path / "prices.json")), 1) == awattar()
    with pytest.raises(InputError, match=r"missing\.json: cannot read"):
        await inputs.fetch(Source(str(tmp_path / "missing.json")), 1)

    async def prices(request: web.Request) -> web.Response:
        return web.Response(body=awattar(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/marketdata", prices)
    server = await aiohttp_server(app)
    url = str(server.make_url("/v1/marketdata"))
    assert await inputs.fetch(Source(url), 1) == awattar()
    with pytest.raises(InputError, match="HTTP 404"):
        await inputs.fetch(Source(str(server.make_url("/nothing"))), 1)
    await server.close()
    with pytest.raises(InputError, match="ClientConnectorError"):
        await inputs.fetch(Source(url), 1)
