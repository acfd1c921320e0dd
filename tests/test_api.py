"""The Pi's API through the real handshake client and a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from handshake import documents
from handshake.auth import keygen, sign
from handshake.client import HandshakeClient
from handshake.documents import InboxDocument, InboxPending
from handshake.errors import AuthError, RequestError
from handshake.util.timeutil import iso
from pi import api
from pi.config import load
from pi.heartbeat import Beat
from pi.hostloop import HostController
from pi.openapi import PI_OPENAPI
from pi.state import HostState
from tests.helpers import KEY, pi_toml
from tests.memdns import MemoryDns

GO = "/api/v1/host/going-offline"


class Rig:
    def __init__(self, server: TestServer, controller: HostController, dns: MemoryDns,
                 wols: list[int], state_dir: Path) -> None:
        self.server = server
        self.controller = controller
        self.dns = dns
        self.wols = wols
        self.state_dir = state_dir
        self.url = str(server.make_url("")).rstrip("/")

    def client(self, key: bytes = KEY) -> HandshakeClient:
        return HandshakeClient(self.url, key)

    async def raw(self, method: str, path: str, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.request(
                method, self.url + path, data=body, headers=headers or {}) as r:
            text = await r.read()
            return r.status, json.loads(text) if r.content_type == "application/json" else text


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
def make_rig(tmp_path: Path, aiohttp_server: Any) -> RigFactory:
    async def factory(**kw: Any) -> Rig:
        config = load(pi_toml(tmp_path, **kw))
        dns = MemoryDns()
        wols: list[int] = []

        async def send_wol() -> None:
            wols.append(1)

        async def probe() -> Beat:
            return Beat(ok=False, at=time.time(), error="test")

        controller = HostController(config, dns, send_wol, probe)
        await controller.start()
        app = api.build_app(config, controller, KEY)
        server = await aiohttp_server(app)
        return Rig(server, controller, dns, wols, config.pi.state_dir)

    return factory


async def online(rig: Rig) -> None:
    async with rig.client() as c:
        await c.request("POST", "/api/v1/host/coming-online", {})
    assert rig.controller.status.state is HostState.ONLINE


async def test_going_offline_switches_dns_and_stores_snapshot(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await online(rig)
    assert rig.dns.address == "127.0.0.3"
    snapshot = {"hostname": "nas", "volumes": [{"path": "/", "used_percent": 41.5}]}
    async with rig.client() as c:
        answer = await c.request("POST", GO, {"reason": "suspend",
                                              "wake_at": "2030-01-01T07:00:00Z",
                                              "snapshot": snapshot})
    assert answer["ack"] is True
    assert answer["state"] == "going_offline"
    assert answer["wake_at"] == "2030-01-01T07:00:00.000Z"
    assert rig.dns.address == "127.0.0.2"
    stored = json.loads((rig.state_dir / "public/snapshot.json").read_text())
    assert stored["schema"] == "edgepair.snapshot/1"
    assert stored["snapshot"] == snapshot
    assert stored["reason"] == "suspend"
    host = json.loads((rig.state_dir / "public/host.json").read_text())
    assert host["state"] == "going_offline"
    assert host["dns"]["target"] == "pi"
    assert host["next_wake"] == {"at": "2030-01-01T07:00:00.000Z", "source": "host"}


async def test_coming_online_reports_inbox_pending(make_rig: RigFactory) -> None:
    rig = await make_rig()
    documents.publish(rig.state_dir / "public/inbox.json", InboxDocument(
        generated_at=iso(time.time()) or "", interval_s=5, pending=InboxPending(files=7)))
    async with rig.client() as c:
        answer = await c.request("POST", "/api/v1/host/coming-online", {"boot_id": "b1"})
    assert answer == {"ack": True, "state": "online", "dns_target": "host", "inbox_pending": 7}


async def test_signed_wake_sends_packet(make_rig: RigFactory) -> None:
    rig = await make_rig(api_extra="")
    async with rig.client() as c:
        answer = await c.request("POST", "/api/v1/wake", {"source": "api"})
    assert answer["sent"] is True
    assert answer["state"] == "waking"
    assert rig.wols == [1]
    await online(rig)
    async with rig.client() as c:
        answer = await c.request("POST", "/api/v1/wake", {})
    assert answer["sent"] is False
    assert rig.wols == [1]


async def assert_unchanged(rig: Rig, state: HostState = HostState.ONLINE) -> None:
    assert rig.controller.status.state is state
    assert rig.dns.address == "127.0.0.3"
    assert not (rig.state_dir / "public/snapshot.json").exists()


def signed_headers(body: bytes, path: str = GO, key: bytes = KEY, method: str = "POST",
                   now: Callable[[], float] = time.time) -> dict[str, str]:
    return {"Authorization": sign(key, method, path, body, now=now),
            "Content-Type": "application/json"}


BODY = json.dumps({"reason": "shutdown"}).encode()


@pytest.mark.parametrize(("case", "expect"), [
    ("unsigned", "missing Authorization"),
    ("wrong_key", "bad signature"),
    ("stale", "outside the ±30 s window"),
    ("future", "outside the ±30 s window"),
    ("tampered_body", "bad signature"),
    ("tampered_query", "bad signature"),
    ("tampered_method_path", "bad signature"),
    ("garbage_header", "malformed Authorization"),
])
async def test_bad_signatures_are_401_and_change_nothing(make_rig: RigFactory, case: str,
                                                         expect: str) -> None:
    rig = await make_rig()
    await online(rig)
    path, body, headers = GO, BODY, signed_headers(BODY)
    if case == "unsigned":
        headers = {}
    elif case == "wrong_key":
        headers = signed_headers(BODY, key=bytes.fromhex(keygen()))
    elif case == "stale":
        headers = signed_headers(BODY, now=lambda: time.time() - 31)
    elif case == "future":
        headers = signed_headers(BODY, now=lambda: time.time() + 31)
    elif case == "tampered_body":
        body = json.dumps({"reason": "reboot"}).encode()
    elif case == "tampered_query":
        headers = signed_headers(BODY, path=GO + "?a=1")
        path = GO + "?a=2"
    elif case == "tampered_method_path":
        headers = signed_headers(BODY, path="/api/v1/host/coming-online")
    elif case == "garbage_header":
        headers = {"Authorization": "Bearer hunter2"}
    status, answer = await rig.raw("POST", path, body, headers)
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"
    assert expect in answer["error"]["message"]
    await assert_unchanged(rig)


async def test_replayed_request_is_401_and_changes_nothing(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await online(rig)
    body = json.dumps({"reason": "shutdown", "snapshot": {"disk": "first"}}).encode()
    headers = signed_headers(body)
    status, _ = await rig.raw("POST", GO, body, headers)
    assert status == 200
    assert rig.controller.status.state is HostState.GOING_OFFLINE
    await online(rig)  # the host came back: a replayed going-offline must not send it away
    snapshot = (rig.state_dir / "public" / "snapshot.json").read_bytes()
    status, answer = await rig.raw("POST", GO, body, headers)
    assert status == 401
    assert "replayed" in answer["error"]["message"]
    assert rig.controller.status.state is HostState.ONLINE
    assert rig.dns.address == "127.0.0.3"  # still the host
    assert (rig.state_dir / "public" / "snapshot.json").read_bytes() == snapshot


async def test_oversize_body_is_413(make_rig: RigFactory) -> None:
    rig = await make_rig(api_extra="max_body_bytes = 2048")
    await online(rig)
    body = json.dumps({"reason": "shutdown", "snapshot": {"x": "y" * 5000}}).encode()
    status, answer = await rig.raw("POST", GO, body, signed_headers(body))
    assert status == 413
    assert answer["error"]["code"] == "body_too_large"
    assert "2048" in answer["error"]["message"]
    await assert_unchanged(rig)


@pytest.mark.parametrize(("body", "expect"), [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"reason": 5}', "reason"),
    (b'{"reason": "nap"}', "reason"),
    (b'{"reason": "suspend", "wake_at": "tomorrow"}', "wake_at"),
    (b'{"reason": "suspend", "wake_at": "2030-01-01T07:00:00"}', "zone"),
    (b'{"reason": "suspend", "snapshot": []}', "snapshot"),
    (b'{"reason": "suspend", "extra": 1}', "unknown field"),
    (b"\xff\xfe", "malformed JSON"),
    # Python's datetime overflows here (year 9999 moved across a zone): still a 400.
    (b'{"reason": "suspend", "wake_at": "9999-12-31T23:59:59-12:00"}', "wake_at"),
    # What a browser's JSON.parse refuses never reaches a public file.
    (b'{"reason": "suspend", "snapshot": {"a": NaN}}', "NaN is not a JSON number"),
    (b'{"reason": "suspend", "snapshot": {"a": 1e999}}', "out of range"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
async def test_bad_bodies_are_400_and_change_nothing(make_rig: RigFactory, body: bytes,
                                                     expect: str) -> None:
    rig = await make_rig()
    await online(rig)
    status, answer = await rig.raw("POST", GO, body, signed_headers(body))
    assert status == 400
    assert answer["error"]["code"] == "invalid"
    assert expect in answer["error"]["message"]
    await assert_unchanged(rig)


async def test_anonymous_wake_is_rate_limited(make_rig: RigFactory) -> None:
    rig = await make_rig(api_extra="anonymous_wake_per_min = 2")
    codes = []
    for _ in range(4):
        status, answer = await rig.raw("POST", "/api/v1/wake", b"{}")
        codes.append(status)
    assert codes[:2] == [202, 202]
    assert codes[2:] == [429, 429]
    assert answer["error"]["code"] == "rate_limited"
    assert len(rig.wols) == 2  # the first sends, the second re-sends while waking


async def test_anonymous_wake_with_a_hostile_body_is_400(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status, answer = await rig.raw("POST", "/api/v1/wake", b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert "nested too deeply" in answer["error"]["message"]
    assert rig.wols == []


async def test_anonymous_wake_refused_when_not_allowed(tmp_path: Path, make_rig: RigFactory) -> None:
    rig = await make_rig(anonymous_wake=False)
    status, answer = await rig.raw("POST", "/api/v1/wake", b"{}")
    assert status == 401
    assert "allow_anonymous_wake" in answer["error"]["message"]
    assert rig.wols == []


async def test_bad_signature_on_wake_is_not_treated_as_anonymous(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status, _ = await rig.raw("POST", "/api/v1/wake", b"{}",
                              signed_headers(b"{}", path="/api/v1/wake",
                                             key=bytes.fromhex(keygen())))
    assert status == 401
    assert rig.wols == []


async def test_client_raises_request_error_with_code(make_rig: RigFactory) -> None:
    rig = await make_rig()
    async with rig.client(key=bytes.fromhex(keygen())) as c:
        with pytest.raises(RequestError) as info:
            await c.request("POST", GO, {"reason": "shutdown"})
    assert info.value.status == 401
    assert not info.value.temporary


async def test_unknown_path_and_method_are_json(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status, answer = await rig.raw("GET", "/api/v1/nope")
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, answer = await rig.raw("GET", GO)
    assert (status, answer["error"]["code"]) == (405, "method_not_allowed")


async def test_public_files_are_served_and_confined(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status, answer = await rig.raw("GET", "/data/host.json")
    assert status == 200
    assert answer["schema"] == "edgepair.host/1"
    async with aiohttp.ClientSession() as s, s.get(rig.url + "/data/host.json") as r:
        # readable by the host's dashboard (another origin), which sets its clock by Date
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Expose-Headers"] == "Date"
        assert r.headers["Cache-Control"] == "no-cache"
    for bad in ("/data/..%2Fprivate%2Fhost-state.json", "/data/HOST.json", "/data/x.txt",
                "/data/snapshot.json"):
        status, answer = await rig.raw("GET", bad)
        assert status == 404, bad
        assert answer["error"]["code"] == "not_found"


async def test_status_and_health_are_open(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status, answer = await rig.raw("GET", "/api/v1/status")
    assert status == 200
    assert answer["state"] == "offline"
    assert answer["dns"]["address"] == "127.0.0.2"
    status, answer = await rig.raw("GET", "/api/v1/health")
    assert (status, answer["ok"]) == (200, True)


async def test_openapi_matches_the_routes(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status, doc = await rig.raw("GET", "/api/v1/openapi.json")
    assert status == 200
    assert doc["paths"].keys() >= json.loads(json.dumps(PI_OPENAPI))["paths"].keys()
    routes = set()
    for route in rig.server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method != "HEAD" and path:
            routes.add((route.method.lower(), path))
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    for route in rig.server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or path not in doc["paths"]:
            continue
        op = doc["paths"][path][route.method.lower()]
        signed = getattr(route.handler, "edgepair_signed", False)
        if path == "/api/v1/wake":  # signed, or anonymous when allowed
            assert op["security"] == [{"EdgePair": []}, {}]
        else:
            assert (op.get("security") == [{"EdgePair": []}]) == signed, path


def test_the_replay_cache_survives_a_clean_restart_and_a_crash_refuses_older_requests(
        tmp_path: Path) -> None:
    config = load(pi_toml(tmp_path))
    body = b"{}"
    header = sign(KEY, "POST", "/api/v1/wake", body, now=lambda: 1_000_000.0)
    first = api.restore_verifier(config, KEY, now=1_000_000.5)  # first start: no cache
    first.clock = lambda: 1_000_001.0
    first.verify(header, "POST", "/api/v1/wake", body)  # signed in the start's second: fine
    api.save_nonces(config, first)  # a clean stop (SIGTERM)
    second = api.restore_verifier(config, KEY, now=1_000_005.0)
    second.clock = lambda: 1_000_006.0
    with pytest.raises(AuthError, match="replayed"):
        second.verify(header, "POST", "/api/v1/wake", body)
    # A crash leaves no cache (it was used once and removed): what was signed before the
    # new start is refused, since it might be a replay.
    third = api.restore_verifier(config, KEY, now=1_000_010.0)
    third.clock = lambda: 1_000_011.0
    with pytest.raises(AuthError, match="signed before this server started"):
        third.verify(header, "POST", "/api/v1/wake", body)
    fresh = sign(KEY, "POST", "/api/v1/wake", body, now=lambda: 1_000_011.0)
    third.verify(fresh, "POST", "/api/v1/wake", body)
