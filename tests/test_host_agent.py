"""The host agent through real HTTP on 127.0.0.1: health, JSON errors, OpenAPI, run()."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from handshake import __version__
from handshake.client import HandshakeClient
from handshake.errors import FatalError
from handshake.http import json_body, signed
from handshake.messages import HostHealth
from handshake.util.schema import HostPort
from host import agent, cli, routes
from host.config import HostAgentSection, HostConfig, PiLink
from tests.helpers import KEY, free_port, write_secrets

BOOT_ID = "0b7c3f0e-1111-4222-8333-944445555666"


def host_config(tmp_path: Path, port: int = 8771, max_body: int = 4096) -> HostConfig:
    secrets = write_secrets(tmp_path / "secrets.toml")
    return HostConfig(
        file=tmp_path / "host.toml",
        host=HostAgentSection(listen=HostPort("127.0.0.1", port), state_dir=tmp_path / "state",
                              secrets_file=secrets, max_body_bytes=max_body),
        pi=PiLink(url="http://127.0.0.1:9"),
    )


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> TestClient[Any, Any]:
    tc: TestClient[Any, Any] = await aiohttp_client(agent.build_app(host_config(tmp_path),
                                                                    boot_id=BOOT_ID))
    return tc


async def test_health_is_open_and_says_which_boot(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/v1/health")
    assert resp.status == 200
    data = await resp.json()
    assert data["ok"] is True
    assert data["boot_id"] == BOOT_ID
    assert data["hostname"] == socket.gethostname()
    assert data["version"] == __version__
    assert data["uptime_s"] is None or data["uptime_s"] > 0
    assert HostHealth.from_json(data).boot_id == BOOT_ID


async def test_default_boot_id_is_the_kernels(tmp_path: Path, aiohttp_client: Any) -> None:
    tc = await aiohttp_client(agent.build_app(host_config(tmp_path)))
    data = await (await tc.get("/api/v1/health")).json()
    kernel = Path("/proc/sys/kernel/random/boot_id")
    if kernel.exists():
        assert data["boot_id"] == kernel.read_text().strip()
    assert data["boot_id"]


async def test_unknown_path_is_a_json_404(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/v1/nope")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_wrong_method_is_a_json_405(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/api/v1/health", data=b"{}")
    assert resp.status == 405
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == "method_not_allowed"
    assert error["message"]


async def test_openapi_lists_exactly_the_routes(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == __version__
    assert _documented(doc) == _routes(client.app)
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["responses"], op
            assert "security" in op, "every operation says whether it is signed"


async def test_signed_route_added_later_is_documented_and_verified(
        tmp_path: Path, aiohttp_client: Any) -> None:
    """What the inbox receiver will do: add_route + signed, the doc follows, the key checks."""

    @signed
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await json_body(request))

    app = agent.build_app(host_config(tmp_path, max_body=2048), boot_id=BOOT_ID)
    routes.add_route(app, "POST", "/api/v1/echo", echo, {
        "operationId": "echo", "security": routes.SIGNED,
        "responses": {"200": {"description": "the body"}}})
    tc = await aiohttp_client(app)

    doc = await (await tc.get("/api/v1/openapi.json")).json()
    assert _documented(doc) == _routes(app)
    assert doc["paths"]["/api/v1/echo"]["post"]["security"] == [{"EdgePair": []}]
    assert "EdgePair" in doc["components"]["securitySchemes"]

    unsigned = await tc.post("/api/v1/echo", json={"a": 1})
    assert unsigned.status == 401
    assert (await unsigned.json())["error"]["code"] == "unauthorized"

    async with HandshakeClient(str(tc.make_url("")), KEY) as hc:
        assert await hc.request("POST", "/api/v1/echo", {"a": 1}) == {"a": 1}
        too_big = await tc.post("/api/v1/echo", data=b"x" * 4096)
        assert too_big.status == 413
        assert (await too_big.json())["error"]["code"] == "body_too_large"


async def test_run_serves_until_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "TICK_S", 0.01)
    port = free_port()
    ready = asyncio.Event()
    ticks: list[int] = []

    def on_ready() -> None:
        ready.set()

    task = asyncio.create_task(agent.run(host_config(tmp_path, port), on_ready=on_ready,
                                         on_tick=lambda: ticks.append(1)))
    async with asyncio.timeout(5):
        await ready.wait()
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/api/v1/health") as resp:
            assert (await resp.json())["ok"] is True
        while len(ticks) < 3:
            await asyncio.sleep(0.01)
        # Guard: only send the signal when run() has replaced the default (fatal) action.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/api/v1/health")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_run_stops_on_event_and_reports_a_busy_port(tmp_path: Path) -> None:
    port = free_port()
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(agent.run(host_config(tmp_path, port), on_ready=ready.set,
                                         stop=stop))
    async with asyncio.timeout(5):
        await ready.wait()
        # The caller owns the lifecycle (the demo runs the agent in its own process).
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        with pytest.raises(FatalError, match=f"cannot listen on 127.0.0.1:{port}"):
            await agent.run(host_config(tmp_path, port))
        stop.set()
        await task


def test_cli_run_tells_systemd_and_stops_on_sigterm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``edgepair host run`` end to end: READY=1, WATCHDOG=1 pings, health, SIGTERM → exit 0."""
    address = f"@edgepair-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s: pings every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    port = free_port()
    path = tmp_path / "host.toml"
    path.write_text(f"""
[host]
listen = "127.0.0.1:{port}"
state_dir = "{tmp_path / 'state'}"
secrets_file = "{write_secrets(tmp_path / 'secrets.toml')}"
[pi]
url = "http://127.0.0.1:9"
""")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + address[1:])
        sock.settimeout(5)
        seen: list[bytes] = []
        health: list[Any] = []

        def systemd() -> None:
            try:
                while b"READY=1" not in seen:
                    seen.append(sock.recv(256))
                url = f"http://127.0.0.1:{port}/api/v1/health"
                with urllib.request.urlopen(url, timeout=5) as r:
                    health.append(json.load(r))
                while seen.count(b"WATCHDOG=1") < 2:
                    seen.append(sock.recv(256))
            finally:
                # Stop the agent even when a step failed, but never kill pytest itself.
                if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                    os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=systemd)
        thread.start()
        try:
            assert cli.main(["run", "--config", str(path)]) == 0
        finally:
            thread.join(5)
    assert seen[0] == b"READY=1"
    assert health[0]["ok"] is True


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"}
