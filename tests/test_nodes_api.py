"""The node daemon's endpoints under attack and abuse: 401, 400, 429, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from handshake.auth import sign
from pi.nodes import wire
from pi.nodes.config import NodesConfig
from pi.nodes.daemon import build_app
from pi.nodes.openapi import NODES_OPENAPI
from tests.nodesite import NodeSite, PyNode, cli, until


@pytest.fixture
def site(tmp_path: Path) -> NodeSite:
    site = NodeSite(tmp_path, hello_per_min=6)
    yield site
    site.close()


async def test_forged_unsigned_and_removed_requests_get_401_bad_json_400(site: NodeSite) -> None:
    await site.start()
    async with aiohttp.ClientSession() as session:
        node = PyNode(site.url, "py-1", "CODE2345", session)
        assert (await node.hello())[1]["state"] == "pending"
        assert (await cli(site, "approve", "py-1", "--code", "CODE2345", "--name", "p1"))[0] == 0
        status, answer = await node.hello()
        assert answer["state"] == "approved"
        assert node.key is not None
        assert await node.cycle() == []
        poll = f"{wire.PREFIX}/py-1/poll"

        status, answer = await node.post(poll, {}, signed=False)
        assert status == 401
        assert "missing Authorization" in answer["error"]["message"]
        forged = sign(b"x" * 32, "POST", poll, b"{}")
        status, answer = await node.post(poll, {}, raw=b"{}", headers={"Authorization": forged})
        assert status == 401
        assert "bad signature" in answer["error"]["message"]
        # Signed for another body: the signature covers the exact bytes.
        signed = sign(node.key, "POST", poll, b"{}")
        status, _ = await node.post(poll, {}, raw=b'{"running": []}',
                                    headers={"Authorization": signed})
        assert status == 401
        # A captured request played again.
        status, _ = await node.post(poll, {}, raw=b"{}", headers={"Authorization": signed})
        assert status == 200
        status, answer = await node.post(poll, {}, raw=b"{}", headers={"Authorization": signed})
        assert status == 401
        assert "replayed" in answer["error"]["message"]
        # Another node's key on this node's path.
        status, answer = await node.post(f"{wire.PREFIX}/py-2/poll", {})
        assert status == 401
        assert "unknown or removed" in answer["error"]["message"]

        for raw in (b"{not json", b"[1, 2]", json.dumps({"readings": {"t": {"value": "hot"}}}).encode()):
            status, answer = await node.post(f"{wire.PREFIX}/py-1/report", None, raw=raw)
            assert status == 400, (raw, answer)
            assert answer["error"]["code"] in ("bad_request", "invalid")
        status, answer = await node.post(f"{wire.PREFIX}/hello", None, raw=b"\xff\xfe", signed=False)
        assert status == 400
        status, answer = await node.post(f"{wire.PREFIX}/hello", {**node.hello_body(), "proof": "zz"},
                                         signed=False)
        assert status in (400, 429)

        assert (await cli(site, "remove", "p1"))[0] == 0
        status, answer = await node.post(poll, {})
        assert status == 401
        assert "unknown or removed" in answer["error"]["message"]


async def test_a_node_flooding_hellos_is_rate_limited(site: NodeSite) -> None:
    await site.start()
    async with aiohttp.ClientSession() as session:
        node = PyNode(site.url, "flood-1", "CODE2345", session)
        statuses = [(await node.hello())[0] for _ in range(8)]
        assert statuses[:3] == [200, 200, 200]  # a burst of three (hello_per_min = 6)
        assert set(statuses[3:]) == {429}
        status, answer = await node.post(f"{wire.PREFIX}/hello", node.hello_body(), signed=False)
        assert status == 429
        assert answer["error"]["retry_after_s"] >= 1
        # The flood remembered one pending node, not eight.
        document = await until(lambda: (d := site.document()) and d.nodes and d)
        assert [n.hwid for n in document.nodes] == ["flood-1"]


async def test_the_admin_endpoints_need_the_pi_key(site: NodeSite) -> None:
    await site.start()
    async with aiohttp.ClientSession() as session:
        for method, path in (("GET", "/admin/nodes"), ("POST", "/admin/approve")):
            async with session.request(method, site.url + wire.PREFIX + path, data=b"{}") as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "unauthorized"
        async with session.get(site.url + wire.PREFIX + "/openapi.json") as r:
            paths = (await r.json())["paths"]
        assert f"{wire.PREFIX}/hello" in paths
        assert f"{wire.PREFIX}/{{hwid}}/report" in paths


def test_the_openapi_document_names_every_node_route() -> None:
    app = build_app(object(), NodesConfig(), b"k" * 32)  # type: ignore[arg-type]  # routes only
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and "/admin/" not in r.resource.canonical
              and r.method != "HEAD"}
    documented = {(m, p) for p, ops in NODES_OPENAPI["paths"].items() for m in ops}
    assert routes - {("get", "/api/v1/nodes/openapi.json")} == documented
