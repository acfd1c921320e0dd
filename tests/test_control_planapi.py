"""``PUT /api/v1/plan`` through the real handshake client and the real api app on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handshake.auth import keygen, sign
from handshake.client import HandshakeClient
from handshake.errors import RequestError
from pi import api
from pi.config import load
from pi.control.plan import PLAN_FILE, SLOT_S
from pi.heartbeat import Beat
from pi.hostloop import HostController
from tests.helpers import KEY, pi_toml
from tests.memdns import MemoryDns
from tests.test_control_support import plan_doc

CONTROL = """
[control]
profile = "sim-inverter"
address = "127.0.0.1"
max_charge_w = 3000
[[control.loads]]
name = "boiler"
address = "127.0.0.1"
"""


class PlanRig:
    def __init__(self, url: str, private: Path) -> None:
        self.url = url
        self.stored = private / PLAN_FILE

    def client(self, key: bytes = KEY) -> HandshakeClient:
        return HandshakeClient(self.url, key)

    async def put(self, doc: Any, key: bytes = KEY) -> Any:
        async with self.client(key) as c:
            return await c.request("PUT", "/api/v1/plan", doc)

    async def raw(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.put(self.url + "/api/v1/plan", data=body,
                                                       headers=headers) as r:
            return r.status, await r.json()


Factory = Callable[..., Awaitable[PlanRig]]


@pytest.fixture
def make_rig(tmp_path: Path, aiohttp_server: Any) -> Factory:
    async def factory(extra: str = CONTROL) -> PlanRig:
        config = load(pi_toml(tmp_path, extra=extra))

        async def send_wol() -> None:
            return None

        async def probe() -> Beat:
            return Beat(ok=False, at=time.time(), error="test")

        controller = HostController(config, MemoryDns(), send_wol, probe)
        await controller.start()
        server = await aiohttp_server(api.build_app(config, controller, KEY))
        return PlanRig(str(server.make_url("")).rstrip("/"), config.private_dir)

    return factory


def now_slot() -> datetime:
    return datetime.fromtimestamp(time.time() // SLOT_S * SLOT_S, UTC)


def doc(seq: int = 1, **kw: Any) -> dict[str, Any]:
    return plan_doc(now_slot(), seq=seq, **kw)


async def test_a_signed_valid_plan_is_stored(make_rig: Factory) -> None:
    rig = await make_rig()
    plan = doc(slots=[{"battery_mode": "charge", "power_w": 2000, "soc_target": 80,
                       "loads": {"boiler": True}}] * 4)
    answer = await rig.put(plan)
    assert answer == {"accepted": True, "id": "p1", "seq": 1, "slots": 4,
                      "valid_until": plan["valid_until"]}
    assert json.loads(rig.stored.read_bytes()) == plan
    assert oct(rig.stored.stat().st_mode & 0o777) == "0o640"
    assert (await rig.put(plan))["unchanged"] is True  # a retried push is harmless
    newer = doc(seq=2, plan_id="p2")
    await rig.put(newer)
    assert json.loads(rig.stored.read_bytes())["id"] == "p2"


async def test_a_stale_seq_is_refused(make_rig: Factory) -> None:
    rig = await make_rig()
    await rig.put(doc(seq=5))
    for stale in (doc(seq=4, plan_id="older"), doc(seq=5, plan_id="same-seq-other-plan")):
        with pytest.raises(RequestError) as info:
            await rig.put(stale)
        assert (info.value.status, info.value.code) == (409, "stale_seq")
    assert json.loads(rig.stored.read_bytes())["seq"] == 5


async def test_unsigned_and_tampered_plans_are_refused_and_nothing_is_stored(make_rig: Factory) -> None:
    rig = await make_rig()
    body = json.dumps(doc()).encode()
    status, answer = await rig.raw(body, {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    signed_for = json.dumps(doc(slots=[{"battery_mode": "hold"}] * 4)).encode()
    header = sign(KEY, "PUT", "/api/v1/plan", signed_for)
    status, answer = await rig.raw(body, {"Authorization": header})  # other bytes than signed
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert "bad signature" in answer["error"]["message"]
    with pytest.raises(RequestError) as info:
        await rig.put(doc(), key=bytes.fromhex(keygen()))
    assert info.value.status == 401
    assert not rig.stored.exists()


@pytest.mark.parametrize(("kw", "field"), [
    ({"slots": [{"battery_mode": "charge", "power_w": 3500, "soc_target": 80}]}, "slots[0].power_w"),
    ({"slots": [{"battery_mode": "normal", "loads": {"pool": True}}]}, "slots[0].loads.pool"),
    ({"slot_s": 3600}, "slot_s"),
    ({"limits": {"max_charge_w": 3500}}, "limits.max_charge_w"),
])
async def test_invalid_plans_are_400_with_the_field(make_rig: Factory, kw: dict[str, Any],
                                                    field: str) -> None:
    rig = await make_rig()
    with pytest.raises(RequestError) as info:
        await rig.put(doc(**kw))
    assert (info.value.status, info.value.code) == (400, "invalid")
    assert field in str(info.value)
    assert not rig.stored.exists()


async def test_expired_or_malformed_plans_are_400(make_rig: Factory) -> None:
    rig = await make_rig()
    old = plan_doc(datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(RequestError, match="valid_until: the plan expired"):
        await rig.put(old)
    async with rig.client() as c:
        with pytest.raises(RequestError) as info:
            await c.request("PUT", "/api/v1/plan", raw=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert info.value.status == 400
    assert not rig.stored.exists()


async def test_without_control_the_endpoint_says_so(make_rig: Factory) -> None:
    rig = await make_rig(extra="")
    with pytest.raises(RequestError) as info:
        await rig.put(doc())
    assert (info.value.status, info.value.code) == (409, "not_configured")


async def test_openapi_documents_the_plan_endpoint(make_rig: Factory) -> None:
    rig = await make_rig()
    async with aiohttp.ClientSession() as s, s.get(rig.url + "/api/v1/openapi.json") as r:
        openapi = await r.json()
    op = openapi["paths"]["/api/v1/plan"]["put"]
    assert op["security"] == [{"EdgePair": []}]
    assert set(op["responses"]) == {"200", "400", "401", "409", "413", "503", "507"}
    schema = openapi["components"]["schemas"]["Plan"]
    assert schema["properties"]["slot_s"] == {"const": 900}
    assert set(schema["required"]) <= set(doc())
