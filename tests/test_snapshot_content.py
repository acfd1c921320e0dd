"""Issue #10: what a snapshot holds never blocks the transition; ``GET /`` is HTML.

The api daemon runs as a child process; the going-offline is signed by the real client
(``json.dumps`` sends a lone surrogate as the valid JSON escape ``"\\ud800"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handshake.client import HandshakeClient
from host import notify
from host.config import load as load_host
from tests.e2e import Site, resolve, status, stop, wait_http
from tests.helpers import KEY

GO = "/api/v1/host/going-offline"
# Heartbeats to the absent host fail; slow enough that "online" holds for the test.
SLOW = 5.0


@pytest.fixture
async def site(tmp_path: Path) -> Any:
    site = Site(tmp_path, interval=SLOW)
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        yield site
    finally:
        assert stop(pi) == 0


async def online(site: Site) -> None:
    async with HandshakeClient(site.api, KEY) as client:
        await client.request("POST", "/api/v1/host/coming-online", {})
    assert await resolve("nas.home.arpa", site.dns_port) == site.HOST_ADDRESS


async def test_a_lone_surrogate_in_the_snapshot_still_switches_dns(site: Site) -> None:
    await online(site)
    snapshot: dict[str, Any] = {"hostname": "nas\ud800",
                                "units": [{"name": "smbd\udfff.service"}], "ok": "fine"}
    snapshot["a\ud800"] = 1  # once made encodable it is the next key's twin: dropped
    snapshot["a\ufffd"] = 2
    async with HandshakeClient(site.api, KEY) as client:
        answer = await client.request("POST", GO, {"reason": "suspend", "snapshot": snapshot})
    assert answer["ack"] is True
    assert answer["state"] == "going_offline"
    assert await resolve("nas.home.arpa", site.dns_port) == site.PI_ADDRESS
    assert (await status(site.api))["state"] == "going_offline"
    stored = json.loads((site.root / "pi-state/public/snapshot.json").read_bytes())
    assert stored["snapshot"] == {"hostname": "nas\ufffd", "units": [{"name": "smbd\ufffd.service"}],
                                  "ok": "fine", "a\ufffd": 2}
    assert stored["sanitised"] == [
        "$.hostname: replaced unencodable text",
        "$.units[0].name: replaced unencodable text",
        "$.a\ufffd: dropped (its key collides once made encodable)",
    ]
    assert answer["sanitised"] == stored["sanitised"]


async def test_a_clean_snapshot_is_stored_as_received(site: Site) -> None:
    await online(site)
    snapshot = {"hostname": "nas", "emoji": "\U0001f600"}
    async with HandshakeClient(site.api, KEY) as client:
        answer = await client.request("POST", GO, {"reason": "shutdown", "snapshot": snapshot})
    assert "sanitised" not in answer
    stored = json.loads((site.root / "pi-state/public/snapshot.json").read_bytes())
    assert (stored["snapshot"], stored["sanitised"]) == (snapshot, [])


async def test_the_host_keeps_what_it_sent_even_with_unencodable_text(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    await online(site)
    # A volume whose path has a byte that is not UTF-8 reaches Python surrogate-escaped.
    monkeypatch.setattr(notify, "build_snapshot",
                        lambda config: {"volumes": [{"path": "/srv/caf\udce9"}]})
    config = load_host(site.host_config)
    answer = await notify.notify(config, "going-offline", reason="suspend")
    assert answer["ack"] is True
    sent = json.loads((site.root / "host-state/public/snapshot-sent.json").read_bytes())
    assert sent["snapshot"] == {"volumes": [{"path": "/srv/caf\ufffd"}]}
    assert await resolve("nas.home.arpa", site.dns_port) == site.PI_ADDRESS


async def test_root_without_a_dashboard_is_a_small_html_page(site: Site) -> None:
    async with aiohttp.ClientSession() as session, session.get(site.api + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert page.startswith("<!doctype html>")
    for link in ('href="/api/v1/status"', 'href="/api/v1/openapi.json"'):
        assert link in page
    assert "frontend_dir" in page
